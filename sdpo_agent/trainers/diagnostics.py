"""Rate-limited warnings about batches that cannot teach anything.

Each warning starts with TRL 1.16's sentence for the same condition (so code and tests that look
for TRL's lines find them); our detail follows. As in TRL, a condition is counted over consecutive
generation batches and warned about on the 1st and then every ``interval``-th (0 disables).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch

logger = logging.getLogger("sdpo_agent")

FLAT_REWARDS = "Observed flat {label} rewards across all sampled generations."
NO_SUCCESS = "{label} did not find any successful rollouts in the current generation groups."
INACTIVE = "SDPO self-distillation is inactive because no reprompted samples were constructed."


class Diagnostics:
    """Consecutive degenerate batches per condition; see the module docstring."""

    def __init__(self, interval: int, flat_tolerance: float, label: str = "SDPO") -> None:
        self.interval = interval
        self.flat_tolerance = flat_tolerance
        self.label = label
        self.counts: Counter[str] = Counter()
        self.emitted: list[str] = []

    @classmethod
    def for_trainer(cls, args: Any, algorithm: str) -> Diagnostics:
        """The diagnostics a trainer's config asks for, its warnings naming ``algorithm``."""
        return cls(
            args.diagnostics_warning_interval, args.diagnostics_flat_tolerance, label=algorithm.upper()
        )

    def observe(self, key: str, degenerate: bool, message: str) -> None:
        """Count ``key`` while ``degenerate`` (reset otherwise); warn on the 1st and every N-th."""
        if not degenerate:
            self.counts[key] = 0
            return
        self.counts[key] += 1
        count = self.counts[key]
        if self.interval and (count == 1 or count % self.interval == 0):
            text = f"{message} Consecutive degenerate steps: {count}."
            self.emitted.append(text)
            logger.warning(text)

    def check_rewards(self, rewards: torch.Tensor, success_threshold: float | None, mode: str) -> None:
        """Warn when the batch has no reward spread, or (``success_threshold``: SDPO's) no success."""
        flat = bool(rewards.numel()) and float(rewards.max() - rewards.min()) <= self.flat_tolerance
        value = f"{rewards[0].item():g}" if rewards.numel() else "none"
        self.observe(
            f"{mode}/flat",
            flat,
            f"{FLAT_REWARDS.format(label=self.label)} [{mode}] every reward in the batch is {value}: "
            "advantages are zero, no policy-gradient signal.",
        )
        if success_threshold is None:
            return
        no_success = bool(rewards.numel()) and not bool((rewards >= success_threshold).any())
        self.observe(
            f"{mode}/no_success",
            no_success,
            f"{NO_SUCCESS.format(label=self.label)} [{mode}] no rollout reached "
            f"success_reward_threshold={success_threshold}: no demonstrations for the teacher.",
        )

    def check_self_distillation(self, mask: torch.Tensor, mode: str) -> None:
        inactive = bool(mask.numel()) and float(mask.sum()) == 0.0
        self.observe(
            f"{mode}/inactive",
            inactive,
            f"{INACTIVE} [{mode}] no sample has a demonstration or feedback, so the distillation loss is zero.",
        )
