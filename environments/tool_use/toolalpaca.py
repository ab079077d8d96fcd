"""Static ToolAlpaca-style tasks: the expected API calls are in the row; nothing is executed.

The model lists its calls as ``Action: <name>`` / ``Action Input: <JSON object>`` pairs
(``<tool_call>`` blocks are accepted too). Reward is 1 iff the multiset of calls equals
the expected one: same names, same number of each, and matching arguments. Arguments
match when they are equal as JSON after normalising strings (case and surrounding
space) and numbers (``5``, ``5.0`` and ``"5"`` are equal).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from sdpo_envs import Feedback, RowsTaskSource, read_jsonl

from .parsing import TOOL_CALL_OPEN, MalformedCall, ToolCall, parse_tool_calls

_ACTION = re.compile(r"^[ \t]*(?:\*\*)?Action(?:\*\*)?[ \t]*:[ \t]*(?P<name>.*)$", re.MULTILINE)
_ACTION_INPUT = re.compile(r"^[ \t]*(?:\*\*)?Action[ \t]*Input(?:\*\*)?[ \t]*:", re.MULTILINE)
_NUMERIC = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_DECODER = json.JSONDecoder()

FORMAT_HELP = (
    "List every API call as two lines:\nAction: <function name>\nAction Input: <arguments as a JSON object>"
)


def is_static(task: Mapping[str, Any]) -> bool:
    return "expected_actions" in task


def _decode_input(segment: str) -> tuple[Any, str | None]:
    text = segment.lstrip()
    if text.startswith("```"):  # a fenced block: drop the fence line
        text = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        value, _ = _DECODER.raw_decode(text.lstrip())
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg})"
    if not isinstance(value, dict):
        return None, f"must be a JSON object, got {type(value).__name__}"
    return value, None


def parse_actions(text: str) -> tuple[list[ToolCall], list[str]]:
    """The calls ``text`` lists and the problems found while reading them."""
    if TOOL_CALL_OPEN in text and not _ACTION.search(text):
        parsed = parse_tool_calls(text)
        calls = [c for c in parsed if isinstance(c, ToolCall)]
        errors = [
            f"tool call {i + 1}: {c.message}" for i, c in enumerate(parsed) if isinstance(c, MalformedCall)
        ]
        return calls, errors
    matches = list(_ACTION.finditer(text))
    calls: list[ToolCall] = []
    errors: list[str] = []
    for i, match in enumerate(matches):
        name = match.group("name").strip().strip("`*\"' ")
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        segment = text[match.end() : end]
        label = f"action {i + 1} ({name or 'no name'})"
        if not name:
            errors.append(f"{label}: 'Action:' names no function")
            continue
        found = _ACTION_INPUT.search(segment)
        if not found:
            errors.append(f"{label}: no 'Action Input:' line follows it")
            continue
        arguments, problem = _decode_input(segment[found.end() :])
        if problem:
            errors.append(f"{label}: the Action Input {problem}")
            continue
        calls.append(ToolCall(name=name, arguments=arguments))
    return calls, errors


def parse_expected(value: Any) -> list[ToolCall]:
    """A row's ``expected_actions``: Action/Action Input text, or a list of calls."""
    if isinstance(value, str):
        calls, errors = parse_actions(value)
        if errors:
            raise ValueError(f"expected_actions cannot be read: {'; '.join(errors)}")
        return calls
    calls = []
    for item in value:
        if isinstance(item, Mapping):
            name, arguments = item["name"], item.get("arguments", {})
        else:
            name, arguments = item[0], item[1]
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
        calls.append(ToolCall(name=str(name), arguments=dict(arguments)))
    return calls


def _canonical(value: Any) -> Any:
    """A hashable normal form: equal forms mean matching arguments (an equivalence relation)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", Decimal(str(value)).normalize())
    if isinstance(value, str):
        text = " ".join(value.split())
        if _NUMERIC.match(text):
            try:
                return ("number", Decimal(text).normalize())
            except InvalidOperation:  # pragma: no cover
                pass
        return ("string", text.casefold())
    if isinstance(value, list):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    return ("other", repr(value))


def _call_key(call: ToolCall) -> tuple[str, Any]:
    return call.name, _canonical(call.arguments)


def _describe_difference(given: dict[str, Any], expected: dict[str, Any], reveal: bool) -> str:
    parts = []
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    wrong = [k for k in expected if k in given and _canonical(given[k]) != _canonical(expected[k])]
    if missing:
        parts.append("missing argument(s) " + ", ".join(map(repr, missing)))
    if extra:
        parts.append("unexpected argument(s) " + ", ".join(map(repr, extra)))
    for key in wrong:
        shown = f" (expected {json.dumps(expected[key], ensure_ascii=False)})" if reveal else ""
        parts.append(
            f"argument {key!r} has the wrong value {json.dumps(given[key], ensure_ascii=False)}{shown}"
        )
    return "; ".join(parts) or "arguments differ"


def compare_calls(given: list[ToolCall], expected: list[ToolCall], reveal: bool = False) -> list[str]:
    """What separates ``given`` from ``expected`` as multisets; empty when they match."""
    # Matching is an equivalence, so greedily pairing equal calls finds a perfect matching if one exists.
    left = Counter(_call_key(c) for c in given)
    unmatched_expected = []
    for call in expected:
        key = _call_key(call)
        if left[key] > 0:
            left[key] -= 1
        else:
            unmatched_expected.append(call)
    leftovers = []
    for call in given:
        key = _call_key(call)
        if left[key] > 0:
            left[key] -= 1
            leftovers.append(call)
    problems = []
    for call in unmatched_expected:
        same_name = next((c for c in leftovers if c.name == call.name), None)
        if same_name is None:
            problems.append(f"missing call: {call.name}")
        else:
            leftovers.remove(same_name)
            problems.append(
                f"{call.name}: {_describe_difference(same_name.arguments, call.arguments, reveal)}"
            )
    problems.extend(f"unexpected call: {c.name}" for c in leftovers)
    return problems


def build_static_messages(task: Mapping[str, Any]) -> list[dict[str, str]]:
    api = task.get("api_name")
    header = f"You can use the API {api}. Its functions:" if api else "You can use these API functions:"
    content = (
        f"{header}\n{task['api_documentation'].strip()}\n\n"
        f"Answer the user's request by making the API calls it needs. {FORMAT_HELP}\n"
        "Repeat the two lines for every call. Do not invent results.\n\n"
        f"User request: {task['instruction'].strip()}"
    )
    return [{"role": "user", "content": content}]


def judge_static(task: Mapping[str, Any], text: str, reveal_expected: bool = False) -> tuple[float, Feedback]:
    expected = parse_expected(task["expected_actions"])
    given, errors = parse_actions(text)
    if errors or not given:
        reason = "; ".join(errors) if errors else "no API call found"
        return 0.0, Feedback(
            text=f"Format error: {reason}. {FORMAT_HELP}",
            verdict="format_error",
            details={"errors": errors, "calls": [c.to_dict() for c in given]},
        )
    problems = compare_calls(given, expected, reveal=reveal_expected)
    details = {"calls": [c.to_dict() for c in given], "expected": [c.to_dict() for c in expected]}
    if not problems:
        return 1.0, Feedback.passed(
            f"Correct: all {len(expected)} expected API call(s) were made with the right arguments.",
            **details,
        )
    text = f"Incorrect API calls ({len(given)} made, {len(expected)} expected):\n" + "\n".join(
        f"- {p}" for p in problems
    )
    return 0.0, Feedback(text=text, verdict="wrong_answer", details={**details, "problems": problems})


def format_actions(calls: list[ToolCall]) -> str:
    return "\n".join(
        f"Action: {c.name}\nAction Input: {json.dumps(c.arguments, ensure_ascii=False)}" for c in calls
    )


def toolalpaca_sample() -> RowsTaskSource:
    """Built-in set ``"toolalpaca"``: hand-written ToolAlpaca-style rows over fictional APIs."""
    path = resources.files(__package__).joinpath("data").joinpath("toolalpaca_sample.jsonl")
    with resources.as_file(path) as file:
        return RowsTaskSource(read_jsonl(file), name="toolalpaca-sample")
