"""Reading a model message: ``<tool_call>`` blocks and the ``<answer>`` tag (now in
``sdpo_envs.tool_calls``, shared with the TRL adapter; re-exported here)."""

from sdpo_envs.tool_calls import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    MAX_CALL_DEPTH,
    MAX_NUMBER_DIGITS,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    MalformedCall,
    ToolCall,
    find_answers,
    format_tool_call,
    has_unclosed_answer,
    parse_tool_calls,
    screen_json,
)

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "MAX_CALL_DEPTH",
    "MAX_NUMBER_DIGITS",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "MalformedCall",
    "ToolCall",
    "find_answers",
    "format_tool_call",
    "has_unclosed_answer",
    "parse_tool_calls",
    "screen_json",
]
