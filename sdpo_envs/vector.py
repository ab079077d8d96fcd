"""Step many environments at once.

Judging is bound by sandbox subprocesses, not by Python, so a thread pool gives real
concurrency. A step that raises or exceeds ``timeout_s`` becomes a ``judge_error`` result
instead of an exception: one bad environment never stops a batch.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym

from .feedback import Feedback


class StepResult(NamedTuple):
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


def _judge_error_result(reason: str) -> StepResult:
    feedback = Feedback.judge_error(reason)
    info = {"feedback": feedback, "success": False, "verdict": feedback.verdict}
    return StepResult("", 0.0, True, False, info)


def _checked_step(env: gym.Env, action: str) -> StepResult:
    observation, reward, terminated, truncated, info = env.step(action)
    feedback = info.get("feedback") if isinstance(info, dict) else None
    if not isinstance(feedback, Feedback):
        raise TypeError(f"{type(env.unwrapped).__name__}.step() returned no Feedback in info['feedback']")
    return StepResult(str(observation), float(reward), bool(terminated), bool(truncated), info)


def default_workers(n: int) -> int:
    return max(1, min(n, 4 * (os.cpu_count() or 1), 64))


def batch_step(
    envs: Sequence[gym.Env],
    actions: Sequence[str],
    *,
    max_workers: int | None = None,
    timeout_s: float | None = None,
) -> list[StepResult]:
    """``env.step(action)`` for each pair, concurrently; results in input order."""
    if len(envs) != len(actions):
        raise ValueError(f"got {len(envs)} environments but {len(actions)} actions")
    if not envs:
        return []
    workers = max_workers or default_workers(len(envs))
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sdpo-judge")
    try:
        futures = [pool.submit(_checked_step, env, action) for env, action in zip(envs, actions)]
        results: list[StepResult] = []
        for future in futures:
            try:
                results.append(future.result(timeout=timeout_s))
            except cf.TimeoutError:
                results.append(_judge_error_result(f"environment step exceeded {timeout_s} s"))
            except Exception as exc:
                results.append(_judge_error_result(f"{type(exc).__name__}: {exc}"))
        return results
    finally:
        # Do not wait for a hung step: its sandbox has its own wall-clock limit.
        pool.shutdown(wait=False, cancel_futures=True)


def rollout_batch(
    envs: Sequence[gym.Env],
    tasks: Sequence[dict[str, Any]],
    actions: Sequence[str],
    *,
    seed: int | None = None,
    max_workers: int | None = None,
    timeout_s: float | None = None,
) -> list[StepResult]:
    """Reset each env on its task, then judge its single action; for single-turn scoring."""
    if not len(envs) == len(tasks) == len(actions):
        raise ValueError(f"lengths differ: {len(envs)} envs, {len(tasks)} tasks, {len(actions)} actions")
    for i, (env, task) in enumerate(zip(envs, tasks)):
        env.reset(seed=None if seed is None else seed + i, options={"task": task})
    return batch_step(envs, actions, max_workers=max_workers, timeout_s=timeout_s)
