"""Reading a model message: Hermes/Qwen ``<tool_call>`` blocks and the ``<answer>`` tag (the
ToolUse-v0 format, shared by the TRL adapter in ``sdpo_envs.interop``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .tags import tag_contents

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

_DECODER = json.JSONDecoder()
# What a tool call may hold: deeper nesting or longer numbers are the model's malformed call,
# refused before the parser (whose recursion and digit limits would raise other errors).
MAX_CALL_DEPTH = 64
MAX_NUMBER_DIGITS = 100
_DIGIT_RUN = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1},}}")


@dataclass(frozen=True)
class ToolCall:
    """One well-formed call: a tool name and its keyword arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class MalformedCall:
    """A ``<tool_call>`` block that could not be read; ``message`` says why."""

    message: str
    raw: str


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical text of one call, as a Hermes/Qwen chat template renders it."""
    return f"{TOOL_CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _resync(text: str, pos: int) -> int:
    """Position after the next closing tag (or the end): where scanning resumes after an error."""
    close = text.find(TOOL_CALL_CLOSE, pos)
    return len(text) if close < 0 else close + len(TOOL_CALL_CLOSE)


def screen_json(text: str) -> str | None:
    """Why ``text`` (JSON, or a prefix of it) is too deep or holds too long a number to be a
    tool call, or None. Brackets and digits inside strings do not count."""
    depth = deepest = 0
    in_string = escaped = False
    outside: list[str] = []
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        outside.append(char)
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_CALL_DEPTH:
                return f"the tool call is nested deeper than {MAX_CALL_DEPTH} levels"
        elif char in "]}":
            depth -= 1
    if _DIGIT_RUN.search("".join(outside)):
        return f"the tool call holds a number with more than {MAX_NUMBER_DIGITS} digits"
    return None


def _decode(text: str, start: int = 0) -> tuple[Any, int]:
    """``raw_decode`` whose every failure is a ``ValueError`` naming what is wrong."""
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at character {exc.pos - start}") from None
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_CALL_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ValueError(str(exc)[:200]) from None


def _to_call(obj: Any, raw: str) -> ToolCall | MalformedCall:
    if not isinstance(obj, dict):
        return MalformedCall(f"a tool call must be a JSON object, got {type(obj).__name__}", raw)
    extra = sorted(set(obj) - {"name", "arguments"})
    if extra:
        return MalformedCall(
            f"unexpected key(s) {', '.join(map(repr, extra))} in the tool call; "
            'write {"name": <tool name>, "arguments": {<argument>: <value>, ...}}',
            raw,
        )
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return MalformedCall('the tool call has no "name" string', raw)
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):
        # OpenAI-style payloads carry arguments as a JSON-encoded string; accept that too.
        encoded = arguments.strip()
        try:
            problem = screen_json(encoded)
            if problem is not None:
                raise ValueError(problem)
            arguments, end = _decode(encoded)
            if end != len(encoded):
                raise ValueError(f"extra data at character {end}")
        except ValueError as exc:
            return MalformedCall(f'"arguments" is a string that is not valid JSON ({exc})', raw)
    if not isinstance(arguments, dict):
        return MalformedCall(f'"arguments" must be a JSON object, got {type(arguments).__name__}', raw)
    return ToolCall(name=name.strip(), arguments=arguments)


def parse_tool_calls(text: str) -> list[ToolCall | MalformedCall]:
    """Every ``<tool_call>`` block of ``text``, in order.

    The JSON is decoded in place rather than cut at the next ``</tool_call>``: a closing
    tag inside a JSON string is data, so arguments cannot break out of their call. A final
    block without its closing tag is accepted (generation often stops at that tag).
    """
    calls: list[ToolCall | MalformedCall] = []
    pos = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, pos)
        if start < 0:
            return calls
        body = _skip_space(text, start + len(TOOL_CALL_OPEN))
        problem = screen_json(text[body : _resync(text, body)])
        try:
            if problem is not None:
                raise ValueError(problem)
            obj, end = _decode(text, body)
        except ValueError as exc:
            pos = _resync(text, body)
            raw = text[body:pos].removesuffix(TOOL_CALL_CLOSE).strip()[:2000]
            message = str(exc) if problem is not None else f"the tool call is not valid JSON: {exc}"
            calls.append(MalformedCall(message, raw))
            continue
        raw = text[body:end]
        after = _skip_space(text, end)
        if text.startswith(TOOL_CALL_CLOSE, after):
            pos = after + len(TOOL_CALL_CLOSE)
        elif after == len(text):
            pos = after
        else:
            pos = _resync(text, after)
            calls.append(
                MalformedCall(f"unexpected text after the JSON object; expected {TOOL_CALL_CLOSE}", raw)
            )
            continue
        calls.append(_to_call(obj, raw))


def find_answers(text: str) -> list[str]:
    """Contents of every closed ``<answer>...</answer>`` tag, stripped."""
    return [content.strip() for content in tag_contents(text, "answer")]


def has_unclosed_answer(text: str) -> bool:
    return text.count(ANSWER_OPEN) > text.count(ANSWER_CLOSE)
