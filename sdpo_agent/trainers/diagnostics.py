"""Rate-limited warnings about batches that cannot teach anything."""

from __future__ import annotations

import logging
from collections import Counter

import torch

logger = logging.getLogger("sdpo_agent")


class Diagnostics:
    """Warn on the 1st occurrence of a condition and then every ``interval``-th (0 disables)."""

    def __init__(self, interval: int, flat_tolerance: float) -> None:
        self.interval = interval
        self.flat_tolerance = flat_tolerance
        self.counts: Counter[str] = Counter()
        self.emitted: list[str] = []

    def warn(self, key: str, message: str) -> None:
        self.counts[key] += 1
        if self.interval and (self.counts[key] - 1) % self.interval == 0:
            text = f"{message} (seen {self.counts[key]} time(s))"
            self.emitted.append(text)
            logger.warning(text)

    def check_rewards(self, rewards: torch.Tensor, success_threshold: float | None, mode: str) -> None:
        """Warn when the batch has no reward spread, or (``success_threshold``: SDPO's) no success."""
        if rewards.numel() and float(rewards.max() - rewards.min()) <= self.flat_tolerance:
            self.warn(
                f"{mode}/flat",
                f"[{mode}] all rewards in the batch are equal ({rewards[0].item():g}): "
                "no policy-gradient signal",
            )
        threshold = success_threshold
        if threshold is not None and rewards.numel() and not bool((rewards >= threshold).any()):
            self.warn(
                f"{mode}/no_success",
                f"[{mode}] no rollout reached success_reward_threshold={threshold}: "
                "no demonstrations for the teacher",
            )

    def check_self_distillation(self, mask: torch.Tensor, mode: str) -> None:
        if mask.numel() and float(mask.sum()) == 0.0:
            self.warn(
                f"{mode}/inactive",
                f"[{mode}] self-distillation is inactive: no sample has a demonstration "
                "or feedback, so the distillation loss is zero",
            )
