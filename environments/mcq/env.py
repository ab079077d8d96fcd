"""``MCQEnv``: a question with lettered options; the answer is one letter in ``<answer>``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, ClassVar

from sdpo_envs import Feedback, RowsTaskSource, TaskSource, TextEnv, read_jsonl

from .judge import judge_mcq
from .options import normalize_task, render_question
from .oracle import oracle_action

INSTRUCTIONS = (
    "Answer with the letter of the correct option inside <answer></answer>, for example <answer>A</answer>."
)


def science_sample() -> RowsTaskSource:
    """Built-in set ``"science-sample"``: 52 hand-written science questions with four options."""
    path = resources.files(__package__).joinpath("data").joinpath("science_sample.jsonl")
    with resources.as_file(path) as file:
        return RowsTaskSource(read_jsonl(file), name="mcq-science-sample")


class MCQEnv(TextEnv):
    """Single-turn multiple choice, reward 1/0, scalar-only feedback (format errors explained)."""

    builtin_datasets: ClassVar[Mapping[str, Callable[..., TaskSource]]] = {"science-sample": science_sample}
    default_dataset: ClassVar[str | None] = "science-sample"

    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        return normalize_task(task)

    def build_messages(self, task: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"{render_question(task)}\n\n{INSTRUCTIONS}"}]

    def oracle_actions(self, task: dict[str, Any]) -> list[str]:
        return [oracle_action(self.validate_task(task))]

    def judge(self, task: dict[str, Any], action: str) -> tuple[float, Feedback]:
        return judge_mcq(task, action)
