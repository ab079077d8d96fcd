"""``sdpo/Math-v0``: answer a math question; the final answer is checked with math-verify."""

from __future__ import annotations

from typing import Any, Literal

from sdpo_envs import Messages, TextEnv
from sdpo_envs.feedback import Feedback
from sdpo_envs.judges.math.pool import shared_math_pool

from .judge import Checker, GradingPolicy, grade
from .oracle import oracle_answer
from .tasks import BUILTIN_DATASETS, normalize_task


class MathEnv(TextEnv):
    """Single-turn math questions with a strictly extracted, math-verify-checked answer.

    ``answer_format``: ``"boxed"`` (last ``\\boxed{...}``) or ``"tag"`` (last
    ``<answer_tag>...</answer_tag>``); ``reveal_answer``: whether feedback names the
    expected answer (off by default); ``quote_answer``: whether feedback repeats the model's
    own answer (on by default); ``check_timeout_s``: per-check limit of the checker (a
    timeout or crash is the answer's ``wrong_answer`` when the reference checks quickly
    against itself, else ``judge_error``); ``percent_as_unit``: read a trailing percent sign
    as a unit dropped from both sides (4\\% matches 4 only) instead of math-verify's
    reading (10\\% matches 0.1 and 10; the default); ``unwrap_nested_boxes``: read
    ``\\boxed{\\boxed{2}}`` as 2, as math-verify does (the default), or refuse it;
    ``checker``: a ``MathVerifyPool`` (or anything with its ``check``) instead of the
    process-wide shared pool. Other keyword arguments go to :class:`sdpo_envs.TextEnv`
    (``dataset``, ``dataset_kwargs``, ...).

    Policies: which text is the final answer (``extract``), which constructs are refused
    although math-verify would accept them (``screen``), verdicts (``judge``), task
    rows and built-in sets (``tasks``).
    """

    builtin_datasets = BUILTIN_DATASETS
    default_dataset = "gsm8k_sample"

    def __init__(
        self,
        dataset: Any = None,
        *,
        answer_format: Literal["boxed", "tag"] = "boxed",
        answer_tag: str = "answer",
        reveal_answer: bool = False,
        check_timeout_s: float = 5.0,
        quote_answer: bool = True,
        percent_as_unit: bool = False,
        unwrap_nested_boxes: bool = True,
        checker: Checker | None = None,
        **kwargs: Any,
    ) -> None:
        self.policy = GradingPolicy(
            answer_format=answer_format,
            answer_tag=answer_tag,
            reveal_answer=reveal_answer,
            check_timeout_s=check_timeout_s,
            quote_answer=quote_answer,
            percent_as_unit=percent_as_unit,
            unwrap_nested_boxes=unwrap_nested_boxes,
        )
        self.checker = checker
        super().__init__(dataset, **kwargs)

    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        return normalize_task(task)

    def build_messages(self, task: dict[str, Any]) -> Messages:
        return [{"role": "user", "content": f"{task['question'].strip()}\n\n{self.policy.instruction}"}]

    def judge(self, task: dict[str, Any], action: str) -> tuple[float, Feedback]:
        return grade(action, task["answer"], self.policy, self.checker or shared_math_pool())

    def oracle_actions(self, task: dict[str, Any]) -> list[str]:
        return [oracle_answer(self.validate_task(task), self.policy)]
