"""Choosing an executor by name: ``judge_backend`` and ``ray_address`` as configs, env kwargs
and the command line spell them."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import gymnasium as gym

from ..judge_backends import JUDGE_BACKENDS, check_judge_backend
from .base import Executor
from .local import LocalExecutor
from .ray import RayExecutor

__all__ = ["JUDGE_BACKENDS", "check_judge_backend", "executor_for", "make_executor"]
# One warm pool per cluster and cap in this process: the trainer, its evaluations and reward
# functions share it rather than each starting actors of their own.
_shared: dict[tuple[str | None, int | None], RayExecutor] = {}
_lock = threading.Lock()


def make_executor(
    judge_backend: str = "local", *, ray_address: str | None = None, max_workers: int | None = None
) -> Executor:
    """The executor of ``judge_backend``: ``"local"`` (this host's threads, ``max_workers`` of
    them) or ``"ray"`` (the cluster at ``ray_address``; ``max_workers`` caps calls in flight),
    shared by every caller in this process that names the same cluster and cap."""
    check_judge_backend(judge_backend, ray_address)
    if judge_backend == "local":
        return LocalExecutor(max_workers)
    with _lock:
        key = (ray_address, max_workers)
        if key not in _shared or _shared[key].closed:
            _shared[key] = RayExecutor(ray_address, max_in_flight=max_workers)
        return _shared[key]


def executor_for(
    envs: Sequence[gym.Env], executor: Executor | None = None, *, max_workers: int | None = None
) -> Executor:
    """Where ``envs`` are stepped: ``executor`` when it is a remote one; otherwise the cluster the
    envs themselves name (``gym.make(id, judge_backend="ray", ray_address=...)``), else
    ``executor`` or this host's threads. The envs of one batch must agree on their backend.
    """
    if executor is not None and executor.remote:
        return executor
    named = {
        (getattr(e.unwrapped, "judge_backend", "local"), getattr(e.unwrapped, "ray_address", None))
        for e in envs
    }
    if len(named) > 1:
        raise ValueError(
            f"the environments of one batch name different judge backends: {sorted(named, key=str)}"
        )
    backend, address = named.pop() if named else ("local", None)
    if backend == "ray":
        return make_executor("ray", ray_address=address, max_workers=max_workers)
    return executor or LocalExecutor(max_workers)
