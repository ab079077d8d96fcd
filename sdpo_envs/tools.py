"""Tools are plain Python functions; this module describes, checks and runs them.

Schemas come from the function's signature and Google-style docstring through
``transformers``' own ``get_json_schema`` (what chat templates use for ``tools=``), so
the model sees exactly what a trainer passes to ``apply_chat_template``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .tool_calls import ToolCall


class ToolError(Exception):
    """A tool refused its input (bad SQL, unknown record): the model's mistake, shown to it."""


class ToolUnavailable(Exception):
    """The tool's infrastructure failed (e.g. no sandbox): the judge's failure, not the model's."""


_schema_lock = threading.Lock()


def tool_schema(function: Callable[..., Any]) -> dict[str, Any]:
    """``{"type": "function", "function": {...}}`` for ``function``, as chat templates expect."""
    # Imported from its own module (not the ``transformers`` top level) to keep it light.
    from transformers.utils import chat_template_utils

    if "torch" in sys.modules:
        return chat_template_utils.get_json_schema(function)
    # ``get_json_schema`` imports torch whenever it is installed, only to map ``torch.Tensor``
    # hints. Environments must never load torch; and while torch is not loaded no resolved hint
    # can be a Tensor, so reporting torch as absent for this call changes no schema.
    with _schema_lock:
        saved = chat_template_utils.is_torch_available
        chat_template_utils.is_torch_available = lambda: False
        try:
            return chat_template_utils.get_json_schema(function)
        finally:
            chat_template_utils.is_torch_available = saved


@dataclass(frozen=True)
class Tool:
    """A callable plus its JSON schema."""

    name: str
    function: Callable[..., Any]
    schema: dict[str, Any]

    @classmethod
    def from_function(cls, function: Callable[..., Any], name: str | None = None) -> Tool:
        schema = tool_schema(function)
        if name is not None:
            schema = {**schema, "function": {**schema["function"], "name": name}}
        return cls(name=schema["function"]["name"], function=function, schema=schema)

    @property
    def parameters(self) -> dict[str, Any]:
        return self.schema["function"].get("parameters", {"type": "object", "properties": {}})

    def check_arguments(self, arguments: Mapping[str, Any]) -> list[str]:
        """Problems with ``arguments`` (names, required ones, JSON types); empty when fine."""
        properties = self.parameters.get("properties", {})
        problems = []
        unknown = [key for key in arguments if key not in properties]
        if unknown:
            expected = ", ".join(properties) or "none"
            problems.append(
                f"unexpected argument(s) {', '.join(map(repr, unknown))} for tool {self.name!r}; "
                f"its arguments are: {expected}"
            )
        missing = [key for key in self.parameters.get("required", []) if key not in arguments]
        if missing:
            problems.append(
                f"missing required argument(s) {', '.join(map(repr, missing))} for tool {self.name!r}"
            )
        for key, value in arguments.items():
            if key in properties:
                problem = type_problem(value, properties[key])
                if problem:
                    problems.append(f"argument {key!r} of tool {self.name!r} {problem}")
        return problems


_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _json_type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _matches_type(value: Any, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "null":
        return value is None
    return True  # a type this checker does not know is left to the tool


def type_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not fit the JSON-schema fragment ``schema``, or ``None``."""
    if value is None and schema.get("nullable"):
        return None
    if "anyOf" in schema:
        if any(type_problem(value, option) is None for option in schema["anyOf"]):
            return None
        return f"does not match any allowed type (got {_json_type_name(value)})"
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_matches_type(value, t) for t in allowed):
            shown = json.dumps(value, ensure_ascii=False)[:60]
            return f"must be of type {' or '.join(allowed)}, got {_json_type_name(value)} {shown}"
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(c) for c in schema["enum"])
        return f"must be one of {choices}; got {json.dumps(value, ensure_ascii=False)[:60]}"
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = type_problem(item, schema["items"])
            if problem:
                return f"item {i} {problem}"
    return None


@dataclass(frozen=True)
class ToolResult:
    """What running one call gave: ``output`` for the model, or ``error``."""

    name: str
    arguments: dict[str, Any]
    output: str = ""
    error: str | None = None
    unavailable: bool = False  # the tool's infrastructure failed (a judge_error)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "ok": self.ok,
            "output": self.output,
            "error": self.error,
        }


def render_output(value: Any) -> str:
    """A tool's return value as the text the model reads (JSON unless it is already text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Toolbox:
    """The tools an environment can run, by name."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = (), max_output_chars: int = 2000) -> None:
        self.max_output_chars = max_output_chars
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool | Callable[..., Any]) -> Tool:
        if not isinstance(tool, Tool):
            tool = Tool.from_function(tool)
        if tool.name in self._tools:
            raise ValueError(f"two tools are named {tool.name!r}")
        self._tools[tool.name] = tool
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self, names: Iterable[str]) -> list[dict[str, Any]]:
        return [self._tools[name].schema for name in names]

    def run(self, call: ToolCall, offered: Iterable[str]) -> ToolResult:
        """Run ``call`` if its tool is among ``offered`` and its arguments fit the schema."""
        offered = list(offered)
        if call.name not in offered or call.name not in self._tools:
            what = "is not available in this task" if call.name in self._tools else "does not exist"
            available = ", ".join(offered) or "none"
            error = f"unknown tool: {call.name!r} {what}; the available tools are: {available}"
            return ToolResult(call.name, call.arguments, error=error)
        tool = self._tools[call.name]
        problems = tool.check_arguments(call.arguments)
        if problems:
            return ToolResult(call.name, call.arguments, error="; ".join(problems))
        try:
            value = tool.function(**call.arguments)
        except ToolUnavailable as exc:
            error = self._cut(f"tool {call.name!r} is unavailable: {exc}")
            return ToolResult(call.name, call.arguments, error=error, unavailable=True)
        except ToolError as exc:
            return ToolResult(call.name, call.arguments, error=self._cut(f"tool {call.name!r} failed: {exc}"))
        except Exception as exc:  # a raising tool is reported to the model, like a real runtime would
            error = self._cut(f"tool {call.name!r} raised {type(exc).__name__}: {exc}")
            return ToolResult(call.name, call.arguments, error=error)
        return ToolResult(call.name, call.arguments, output=self._cut(render_output(value)))

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[: self.max_output_chars] + f"\n[... output cut at {self.max_output_chars} characters ...]"


def render_results(results: list[ToolResult]) -> str:
    """The tool message: one result as is, several numbered in call order."""

    def one(result: ToolResult) -> str:
        if not result.ok:
            return f"Error: {result.error}"
        return result.output if result.output.strip() else "(no output)"

    if len(results) == 1:
        return one(results[0])
    return "\n\n".join(
        f"[{i}] {r.name or 'malformed call'}: {one(r)}" for i, r in enumerate(results, start=1)
    )


def call_label(index: int, result: ToolResult) -> str:
    """How feedback names the ``index``-th call of a message (1-based)."""
    return f"call {index} ({result.name})" if result.name else f"call {index}"
