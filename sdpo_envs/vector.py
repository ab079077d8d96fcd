"""Step many environments at once, on an executor (default: this host's thread pool).

A step that raises or exceeds ``timeout_s`` becomes a ``judge_error`` result instead of an
exception: one bad environment never stops a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from .executors import Executor, StepResult, default_workers, executor_for

__all__ = ["StepResult", "batch_step", "default_workers", "rollout_batch"]


def batch_step(
    envs: Sequence[gym.Env],
    actions: Sequence[str],
    *,
    max_workers: int | None = None,
    timeout_s: float | None = None,
    executor: Executor | None = None,
) -> list[StepResult]:
    """``env.step(action)`` for each pair, concurrently; results in input order.

    ``executor``: where the steps run (``sdpo_envs.executors``: a Ray cluster, say); default a
    thread pool of ``max_workers`` threads on this host.
    """
    if len(envs) != len(actions):
        raise ValueError(f"got {len(envs)} environments but {len(actions)} actions")
    return executor_for(envs, executor, max_workers=max_workers).step(envs, actions, timeout_s=timeout_s)


def rollout_batch(
    envs: Sequence[gym.Env],
    tasks: Sequence[dict[str, Any]],
    actions: Sequence[str],
    *,
    seed: int | None = None,
    max_workers: int | None = None,
    timeout_s: float | None = None,
    executor: Executor | None = None,
) -> list[StepResult]:
    """Reset each env on its task, then judge its single action; for single-turn scoring."""
    if not len(envs) == len(tasks) == len(actions):
        raise ValueError(f"lengths differ: {len(envs)} envs, {len(tasks)} tasks, {len(actions)} actions")
    for i, (env, task) in enumerate(zip(envs, tasks)):
        env.reset(seed=None if seed is None else seed + i, options={"task": task})
    return batch_step(envs, actions, max_workers=max_workers, timeout_s=timeout_s, executor=executor)
