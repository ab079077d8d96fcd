"""The oracle: answers every multiple-choice task with its correct letter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .options import normalize_task


def oracle_action(task: Mapping[str, Any]) -> str:
    return f"<answer>{normalize_task(task)['answer']}</answer>"
