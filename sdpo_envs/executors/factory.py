"""Choosing an executor by name: ``judge_backend`` and ``ray_address`` as configs, env kwargs
and the command line spell them."""

from __future__ import annotations

import threading

from .base import Executor
from .local import LocalExecutor
from .ray import RayExecutor

JUDGE_BACKENDS = ("local", "ray")
# One warm pool per cluster and cap in this process: the trainer, its evaluations and reward
# functions share it rather than each starting actors of their own.
_shared: dict[tuple[str | None, int | None], RayExecutor] = {}
_lock = threading.Lock()


def check_judge_backend(judge_backend: str, ray_address: str | None) -> None:
    """Raise ``ValueError`` for an unknown backend, or an address given to the local one."""
    if judge_backend not in JUDGE_BACKENDS:
        raise ValueError(f"judge_backend must be one of {JUDGE_BACKENDS}, got {judge_backend!r}")
    if ray_address is not None and judge_backend != "ray":
        raise ValueError(f"ray_address={ray_address!r} needs judge_backend='ray' (got {judge_backend!r})")


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
