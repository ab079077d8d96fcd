"""Tools as plain Python functions: schemas, argument checks, running them (now in
``sdpo_envs.tools``, shared with the TRL adapter; re-exported here)."""

from sdpo_envs.tools import (
    Tool,
    Toolbox,
    ToolError,
    ToolResult,
    ToolUnavailable,
    render_output,
    tool_schema,
    type_problem,
)

__all__ = [
    "Tool",
    "ToolError",
    "ToolResult",
    "ToolUnavailable",
    "Toolbox",
    "render_output",
    "tool_schema",
    "type_problem",
]
