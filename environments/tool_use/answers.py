"""Checking a final answer against a task's reference answer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# A number, optionally with a currency sign before it and a unit or word after it
# ("12.5", "1,234.50 km", "$19.99", "-3e4"); the unit is not checked.
_NUMBER = re.compile(
    r"^[$€£]?\s*(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+)"
    r"\s*(?P<unit>[^\d]*)$"
)


def parse_number(text: str) -> Decimal | None:
    """The number ``text`` states, or ``None``; Decimal keeps long integers exact."""
    match = _NUMBER.match(text.strip().rstrip("."))
    if not match:
        return None
    try:
        return Decimal(match.group("num").replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex only admits valid literals
        return None


def normalize_text(text: str) -> str:
    text = text.strip().strip("\"'`").rstrip(".").strip()
    return " ".join(text.casefold().split())


def numbers_match(given: Decimal, expected: Decimal, tolerance: Mapping[str, Any] | None) -> bool:
    tolerance = tolerance or {}
    abs_tol = Decimal(str(tolerance.get("abs", 1e-6)))
    rel_tol = Decimal(str(tolerance.get("rel", 0.0)))
    return abs(given - expected) <= abs_tol + rel_tol * abs(expected)


def answer_type(task: Mapping[str, Any]) -> str:
    declared = task.get("answer_type")
    if declared:
        return str(declared)
    return "number" if parse_number(str(task["answer"])) is not None else "text"


def check_answer(given: str, task: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(correct, format_problem)``; ``format_problem`` explains an answer that is not even a candidate."""
    if answer_type(task) == "number":
        value = parse_number(given)
        if value is None:
            return False, f"the answer must be a single number (e.g. 12.5), got {given[:80]!r}"
        expected = parse_number(str(task["answer"]))
        if expected is None:
            raise ValueError(f"task answer {task['answer']!r} is not a number")
        return numbers_match(value, expected, task.get("tolerance")), None
    return normalize_text(given) == normalize_text(str(task["answer"])), None
