"""``sdpo/ToolUse-v0``: multi-turn tool calling (Hermes/Qwen ``<tool_call>``) judged on the final answer."""

from __future__ import annotations


def register_envs() -> None:
    import sdpo_envs

    sdpo_envs.register("sdpo/ToolUse-v0", entry_point="environments.tool_use.env:ToolUseEnv")
