"""Reading a model message: Hermes/Qwen ``<tool_call>`` blocks and the ``<answer>`` tag."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_DECODER = json.JSONDecoder()


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


def strip_thinking(text: str) -> str:
    """Drop reasoning so that a tag written while thinking is not taken as the answer.

    Closed ``<think>...</think>`` blocks are removed; a lone ``</think>`` (templates that
    open the block inside the prompt) drops everything before it.
    """
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    return text


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
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return MalformedCall(f'"arguments" is a string that is not valid JSON ({exc.msg})', raw)
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
        try:
            obj, end = _DECODER.raw_decode(text, body)
        except json.JSONDecodeError as exc:
            pos = _resync(text, body)
            raw = text[body:pos].removesuffix(TOOL_CALL_CLOSE).strip()
            calls.append(
                MalformedCall(
                    f"the tool call is not valid JSON: {exc.msg} at character {exc.pos - body}", raw
                )
            )
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
    return [match.strip() for match in _ANSWER.findall(text)]


def has_unclosed_answer(text: str) -> bool:
    return text.count(ANSWER_OPEN) > text.count(ANSWER_CLOSE)
