"""The oracle: plays a task perfectly by following its reference tool-call path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from .parsing import ToolCall, format_tool_call
from .toolalpaca import format_actions, is_static, parse_expected


def _arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments") or {}
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    # Arrow pads struct columns with None for keys other rows have; no reference argument is None.
    return {k: v for k, v in arguments.items() if v is not None}


def oracle_actions(task: Mapping[str, Any]) -> list[str]:
    """The messages the oracle sends: one reference call per message, then the answer."""
    if is_static(task):
        calls = parse_expected(task["expected_actions"])
        return [format_actions([ToolCall(c.name, c.arguments) for c in calls])]
    actions = [format_tool_call(call["name"], _arguments(call)) for call in task.get("reference_calls") or []]
    actions.append(f"<answer>{task['answer']}</answer>")
    return actions


def play_oracle(
    env: gym.Env, task: Mapping[str, Any], seed: int | None = None
) -> tuple[float, dict[str, Any]]:
    """Run one episode of ``task`` with the oracle; returns the last reward and info."""
    env.reset(seed=seed, options={"task": dict(task)})
    reward, info = 0.0, {}
    for action in oracle_actions(task):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return float(reward), info
