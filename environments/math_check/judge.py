"""Grade one completion against a reference answer: extraction, screening, math-verify.

The verdict ladder: no usable final answer (see ``extract``), an answer that cannot be read
unambiguously (see ``screen``, or math-verify parses nothing) or one too long or too deep to
check is ``format_error``; an answer that states something other than a single value, or
the wrong value, is ``wrong_answer``. When the checker times out or crashes, the reference
is checked against itself: if that is quick, the answer caused the failure (``wrong_answer``:
too large or too complex to evaluate); if not, or if the reference cannot be parsed, the
judge is at fault (``judge_error``).
Feedback quotes the model's own answer (unless ``quote_answer`` is off); it names the
expected answer only when ``reveal_answer`` is set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sdpo_envs import Feedback
from sdpo_envs.judges.math.pool import CheckResult

from .extract import Extraction, extract_boxed, extract_tagged
from .screen import screen, screen_size, strip_percent, strip_trailing_period

QUOTE_CHARS = 200


class Checker(Protocol):
    def check(self, answer: str, gold: str, *, timeout_s: float | None = None) -> CheckResult: ...


@dataclass(frozen=True)
class GradingPolicy:
    """What counts as the final answer, and what feedback may say."""

    answer_format: Literal["boxed", "tag"] = "boxed"
    answer_tag: str = "answer"
    reveal_answer: bool = False
    check_timeout_s: float = 5.0
    # False: verdict feedback says "your final answer" without repeating its value (a small
    # self-teacher tends to copy a quoted wrong answer back instead of avoiding it).
    quote_answer: bool = True
    # True: a trailing percent sign is a unit, dropped from answer and reference alike
    # (4\% matches 4, not 0.04). False: math-verify's reading (10\% matches 0.1 and 10).
    percent_as_unit: bool = False
    # True: boxes wrapping the whole answer are unwrapped (\boxed{\boxed{2}} reads 2, as in
    # math-verify). False: any box inside the final answer is a format_error.
    unwrap_nested_boxes: bool = True

    def __post_init__(self) -> None:
        if self.answer_format not in ("boxed", "tag"):
            raise ValueError(f"answer_format must be 'boxed' or 'tag', got {self.answer_format!r}")
        if not self.answer_tag.isidentifier():
            raise ValueError(f"answer_tag must be a plain tag name like 'answer', got {self.answer_tag!r}")
        if self.check_timeout_s <= 0:
            raise ValueError(f"check_timeout_s must be > 0, got {self.check_timeout_s}")

    def wrap(self, content: str) -> str:
        """``content`` written the way the model is asked to write its final answer."""
        if self.answer_format == "boxed":
            return f"\\boxed{{{content}}}"
        return f"<{self.answer_tag}>{content}</{self.answer_tag}>"

    def quote(self, answer: str) -> str:
        """The answer as written after "your final answer" (space included); "" when not quoted."""
        return f" {self.show(answer)}" if self.quote_answer else ""

    def show(self, content: str) -> str:
        """:meth:`wrap`, cut to a length fit for feedback."""
        if len(content) > QUOTE_CHARS:
            content = content[: QUOTE_CHARS - 3] + "..."
        return self.wrap(content)

    @property
    def instruction(self) -> str:
        """The request appended to every question."""
        where = (
            "within \\boxed{}"
            if self.answer_format == "boxed"
            else f"within <{self.answer_tag}></{self.answer_tag}> tags"
        )
        return f"Please reason step by step, and put your final answer {where}."

    @property
    def how_to_answer(self) -> str:
        return f"Put your final answer in {self.show('...')} at the very end, e.g. {self.show('42')}"

    def extract(self, completion: str) -> Extraction:
        if self.answer_format == "boxed":
            return extract_boxed(completion, self.unwrap_nested_boxes)
        return extract_tagged(completion, self.answer_tag, self.unwrap_nested_boxes)


_PROBLEMS = {
    "no_answer": "No final answer found. {how}; an answer given only in the reasoning is not graded.",
    "several_answers": "Several different final answers: {found}. Give exactly one final answer.",
    "empty_answer": "Your final answer {empty} is empty. {how}.",
    "unclosed_answer": "Your final answer is never closed (a missing '}}' or closing tag). {how}.",
    "malformed_box": "\\boxed must be followed by braces. {how}.",
    "nested_box": "A box inside your final answer: give one plain final answer. {how}.",
    "unclosed_thinking": "Your reasoning (<think>) is never closed, so there is no final answer after it. {how}.",
}


def _extraction_feedback(extraction: Extraction, policy: GradingPolicy) -> str:
    found = ", ".join(policy.show(c.strip()) for c in extraction.found[:6])
    return _PROBLEMS[extraction.problem or "no_answer"].format(
        how=policy.how_to_answer, found=found, empty=policy.show("")
    )


def _feedback(
    verdict: str, text: str, code: str, policy: GradingPolicy, gold: str, **details: Any
) -> Feedback:
    if policy.reveal_answer:
        text += f" The expected answer is {gold}."
        details["expected"] = gold
    return Feedback(text=text, verdict=verdict, success=False, details={"code": code, **details})  # type: ignore[arg-type]


def _as_latex(answer: str) -> str:
    # math-verify reads LaTeX inside $...$ (plain numbers parse either way).
    return answer if "$" in answer else f"${answer}$"


def grade(completion: str, gold: str, policy: GradingPolicy, checker: Checker) -> tuple[float, Feedback]:
    """Reward (1.0 or 0.0) and feedback for ``completion`` given the reference ``gold``."""
    extraction = policy.extract(completion)
    if extraction.answer is None:
        text = _extraction_feedback(extraction, policy)
        return 0.0, _feedback(
            "format_error",
            text,
            extraction.problem or "no_answer",
            policy,
            gold,
            found=list(extraction.found[:6]),
        )
    answer = strip_trailing_period(extraction.answer)
    quoted = policy.quote(answer)
    rejection = screen_size(answer, gold) or screen(answer, gold)
    if rejection is not None:
        text = f"Your final answer{quoted} is not accepted: {rejection.message}."
        return 0.0, _feedback(rejection.verdict, text, rejection.code, policy, gold, extracted=answer)

    unit = strip_percent if policy.percent_as_unit else str
    result = checker.check(
        f"$\\boxed{{{unit(answer)}}}$", _as_latex(unit(gold)), timeout_s=policy.check_timeout_s
    )
    if not result.judged:
        if not _reference_checks(checker, _as_latex(unit(gold)), policy.check_timeout_s):
            return 0.0, Feedback.judge_error(
                result.error or "checker failed", code="checker_failed", extracted=answer
            )
        text = (
            f"Your final answer{quoted} could not be checked within {policy.check_timeout_s:g} s: "
            "it is too large or too complex to evaluate. Box the simplified value."
        )
        return 0.0, _feedback(
            "wrong_answer", text, "too_complex", policy, gold, extracted=answer, checker=result.error
        )
    if result.gold is None:
        return 0.0, Feedback.judge_error(
            f"the reference answer {gold!r} could not be parsed", code="bad_reference"
        )
    if result.answer is None:
        text = f"Your final answer{quoted} could not be read as a mathematical expression."
        return 0.0, _feedback("format_error", text, "unparseable", policy, gold, extracted=answer)
    if result.correct:
        return 1.0, Feedback.passed(
            f"Correct: your final answer{quoted} is right.",
            code="correct",
            extracted=answer,
            parsed=result.answer,
        )
    text = f"Your final answer{quoted} is incorrect."
    return 0.0, _feedback(
        "wrong_answer", text, "wrong_value", policy, gold, extracted=answer, parsed=result.answer
    )


_quick_references: set[tuple[int, str]] = set()
_quick_lock = threading.Lock()


def _reference_checks(checker: Checker, gold: str, timeout_s: float) -> bool:
    """Whether ``gold`` checks against itself within ``timeout_s`` (remembered once true).

    After a checker failure this tells whose fault it was: a reference that checks quickly
    shows the checker works on this task, so the answer made it fail."""
    key = (id(checker), gold)
    if key in _quick_references:
        return True
    result = checker.check(gold, gold, timeout_s=timeout_s)
    quick = result.judged and result.correct is True
    if quick:
        with _quick_lock:
            if len(_quick_references) > 4096:
                _quick_references.clear()
            _quick_references.add(key)
    return quick
