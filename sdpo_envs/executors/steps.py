"""One environment step as an executor runs it: checked, turned into a ``StepResult``, and --
for executors whose calls run in another process -- shipped there and its new state adopted.

A shipped step carries the env's episode state (the instance, pickled, without its task set),
runs ``env.step`` on the copy and sends the copy's state back, so the caller's env ends up as a
local step would have left it: multi-turn episodes continue, and results are identical.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import gymnasium as gym

from ..core import TextEnv
from ..feedback import Feedback

# Attributes a shipped env leaves behind: the task set is only read by reset(), and can be large.
_NOT_SHIPPED = ("tasks",)


class StepResult(NamedTuple):
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


def judge_error_result(reason: str) -> StepResult:
    feedback = Feedback.judge_error(reason)
    info = {"feedback": feedback, "success": False, "verdict": feedback.verdict}
    return StepResult("", 0.0, True, False, info)


def checked_step(env: gym.Env, action: str) -> StepResult:
    """``env.step(action)`` as a ``StepResult``; ``TypeError`` if the env gave no Feedback."""
    observation, reward, terminated, truncated, info = env.step(action)
    feedback = info.get("feedback") if isinstance(info, dict) else None
    if not isinstance(feedback, Feedback):
        raise TypeError(f"{type(env.unwrapped).__name__}.step() returned no Feedback in info['feedback']")
    return StepResult(str(observation), float(reward), bool(terminated), bool(truncated), info)


def step_pair(pair: tuple[gym.Env, str]) -> StepResult:
    """``checked_step`` of an ``(env, action)`` pair, stepping the env in place."""
    return checked_step(*pair)


def ship(env: gym.Env) -> gym.Env:
    """A shallow copy of ``env`` to send to another process: without its task set."""
    shipped = copy.copy(env)
    if isinstance(env, TextEnv):
        for name in _NOT_SHIPPED:
            setattr(shipped, name, None)
    return shipped


def step_shipped(pair: tuple[gym.Env, str]) -> tuple[StepResult, dict[str, Any]]:
    """Run on the worker: step the shipped env, return the result and the env's new state."""
    env, action = pair
    result = checked_step(env, action)
    state = {k: v for k, v in vars(env).items() if not (isinstance(env, TextEnv) and k in _NOT_SHIPPED)}
    return result, state


def adopt(env: gym.Env, state: dict[str, Any]) -> None:
    """Give the caller's ``env`` the state its shipped copy had after the step."""
    for name, value in state.items():
        setattr(env, name, value)
