"""The feedback an environment returns after every step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal[
    "pass",
    "wrong_answer",
    "runtime_error",
    "compile_error",
    "time_limit",
    "memory_limit",
    "format_error",
    "tool_error",
    "judge_error",
]
VERDICTS: tuple[str, ...] = (
    "pass",
    "wrong_answer",
    "runtime_error",
    "compile_error",
    "time_limit",
    "memory_limit",
    "format_error",
    "tool_error",
    "judge_error",
)

DEFAULT_MAX_FEEDBACK_CHARS = 2000
_ELISION = "\n[... feedback truncated ...]\n"


def bound_text(text: str, max_chars: int = DEFAULT_MAX_FEEDBACK_CHARS) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, keeping its head and tail.

    Judges put the most important line first and the traceback tail last, so both ends survive.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if len(text) <= max_chars:
        return text
    if max_chars <= len(_ELISION) + 2:
        return text[:max_chars]
    keep = max_chars - len(_ELISION)
    head = (keep * 2) // 3
    return text[:head] + _ELISION + text[len(text) - (keep - head) :]


@dataclass(frozen=True)
class Feedback:
    """Model-facing text plus a machine-readable verdict.

    ``text`` is what a teacher reprompt may quote; ``details`` holds structured results
    (per-test outcomes, the parsed answer, ...) for logging and analysis.

    >>> feedback = Feedback("Expected 4, got 5.", "wrong_answer", details={"expected": 4})
    >>> feedback.success, feedback.is_judge_error
    (False, False)
    >>> Feedback.passed().verdict, Feedback.passed().success
    ('pass', True)
    >>> Feedback("hi", "maybe")
    Traceback (most recent call last):
    ...
    ValueError: unknown verdict 'maybe'; expected one of pass, wrong_answer, runtime_error, compile_error, time_limit, memory_limit, format_error, tool_error, judge_error
    """

    text: str
    verdict: Verdict
    success: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {', '.join(VERDICTS)}")
        if not isinstance(self.text, str):
            raise TypeError(f"Feedback.text must be str, got {type(self.text).__name__}")
        if self.success and self.verdict != "pass":
            raise ValueError(f"success=True requires verdict 'pass', got {self.verdict!r}")

    @property
    def is_judge_error(self) -> bool:
        """True when the judge, not the model, failed: such rollouts carry no learning signal."""
        return self.verdict == "judge_error"

    @classmethod
    def passed(cls, text: str = "All checks passed.", **details: Any) -> Feedback:
        return cls(text=text, verdict="pass", success=True, details=dict(details))

    @classmethod
    def judge_error(cls, reason: str, **details: Any) -> Feedback:
        return cls(
            text="The answer could not be judged because of an internal error of the judge.",
            verdict="judge_error",
            success=False,
            details={"reason": reason, **details},
        )

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "verdict": self.verdict, "success": self.success, "details": self.details}
