"""An oracle solver: a correct, model-style completion for any ``sdpo/Math-v0`` task.

It writes the reference answer the way the env asks for it, so it checks the whole path --
prompt, extraction, screening, math-verify -- rather than any mathematics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .judge import GradingPolicy
from .tasks import normalize_task


def oracle_answer(task: Mapping[str, Any], policy: GradingPolicy | None = None) -> str:
    """A completion that earns reward 1 on ``task`` under ``policy`` (default: boxed answers)."""
    policy = policy or GradingPolicy()
    answer = normalize_task(task)["answer"].strip()
    if answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    # One short sentence: a warm start on it teaches the answer format, not the mathematics.
    return f"The final answer is {policy.wrap(answer)}."
