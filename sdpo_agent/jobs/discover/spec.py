"""What a discovery run is made of: its settings, the methods, and the record of each
method × question × seed (a *unit*)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..specs import MODEL_HELP, SpecError, check_field_types

METHODS = ("sdpo", "best_of_k", "retries")


METHOD_LABELS = {
    "sdpo": "SDPO (test-time)",
    "best_of_k": "best-of-k (i.i.d.)",
    "retries": "multi-turn retries",
}


@dataclass
class DiscoverySpec:
    """Everything that determines a discovery run, except which questions, seeds and methods."""

    env: str = field(metadata={"help": "environment id, e.g. sdpo/Math-v0"})
    model: str = field(default="tiny", metadata={"help": MODEL_HELP})
    budget: int = field(default=16, metadata={"help": "attempts (generated completions) per chain"})
    group_size: int = field(default=4, metadata={"help": "SDPO attempts per step (G)"})
    topk: int = field(default=100, metadata={"help": "SDPO distillation top-K logits"})
    learning_rate: float = field(default=1e-5, metadata={"help": "SDPO's learning rate"})
    max_completion_length: int = field(default=256, metadata={"help": "longest attempt", "unit": "tokens"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature, every method"})
    retry_window_tokens: int = field(
        default=2048, metadata={"help": "context budget of the retry conversation", "unit": "tokens"}
    )
    best_of_samples: int | None = field(
        default=None, metadata={"help": "i.i.d. samples per seed, n >= budget (default: the budget)"}
    )
    stop_at_first_success: bool = field(
        default=True,
        metadata={"help": "stop SDPO at its first success (--no-stop-at-first-success trains to the budget)"},
    )
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    sdpo_overrides: dict[str, Any] = field(default_factory=dict)  # any SDPOConfig field

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("budget", "group_size", "topk", "max_completion_length", "retry_window_tokens"):
            if getattr(self, name) < 1:
                raise SpecError(f"{{{name}}} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise SpecError("{learning_rate} and {temperature} must be > 0")
        if self.best_of_samples is not None and self.best_of_samples < self.budget:
            raise SpecError(
                f"{{best_of_samples}} ({self.best_of_samples}) must be >= {{budget}} ({self.budget}): "
                "the unbiased pass@k estimator needs n >= k samples"
            )

    @property
    def use_vllm(self) -> bool:
        """``--set use_vllm=true`` samples every method with vLLM, not only the SDPO trainer."""
        return bool(self.sdpo_overrides.get("use_vllm", False))

    @property
    def samples_per_seed(self) -> int:
        return self.best_of_samples or self.budget

    def key(self) -> str:
        """Hash of the settings a finished unit depends on; a rerun reuses only matching units."""
        payload = json.dumps({**dataclasses.asdict(self), "recipe": 1}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Attempt:
    success: bool
    verdict: str
    reward: float | None = None


@dataclass
class UnitResult:
    """One method on one question with one seed: its attempts in the order they were made."""

    method: str
    task_id: str
    task_index: int
    seed: int
    budget: int
    attempts: list[Attempt]
    wall_s: float = 0.0
    first_success_text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    spec_key: str = ""

    @property
    def first_success(self) -> int | None:
        """1-based attempt index of the first success within the budget, or None."""
        return first_success_index([a.success for a in self.attempts], self.budget)

    @property
    def successes(self) -> int:
        return sum(a.success for a in self.attempts)

    @property
    def judge_errors(self) -> int:
        return sum(a.verdict == "judge_error" for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "first_success": self.first_success}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitResult:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values["attempts"] = [Attempt(**a) for a in data["attempts"]]
        return cls(**values)


def first_success_index(successes: Sequence[bool], budget: int) -> int | None:
    for index, success in enumerate(successes[:budget]):
        if success:
            return index + 1
    return None


def attempt_of(feedback: Any, reward: float | None) -> Attempt:
    """The record of one judged attempt (no feedback: the env never judged it, a format error)."""
    if feedback is None:
        return Attempt(False, "format_error", reward)
    return Attempt(bool(feedback.success), str(feedback.verdict), None if reward is None else float(reward))
