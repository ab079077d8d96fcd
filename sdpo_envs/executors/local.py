"""``LocalExecutor``: this host's thread pool, as judging has always run.

Judging is bound by sandbox subprocesses, not by Python, so threads give real concurrency.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Sequence
from typing import Any

from .base import Executor
from .outcome import Outcome, run_call


def default_workers(n: int) -> int:
    """Threads for ``n`` calls: four per CPU (calls mostly wait on sandboxes), at most 64."""
    return max(1, min(n, 4 * (os.cpu_count() or 1), 64))


class LocalExecutor(Executor):
    """Runs each batch on a fresh thread pool of ``max_workers`` threads (default
    :func:`default_workers`). A call past ``timeout_s`` is abandoned, not waited for: its
    sandbox has its own wall-clock limit."""

    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, timeout_s: float | None = None
    ) -> list[Outcome]:
        if not items:
            return []
        workers = self.max_workers or default_workers(len(items))
        pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sdpo-judge")
        try:
            futures = [pool.submit(run_call, fn, item) for item in items]
            outcomes: list[Outcome] = []
            for future in futures:
                try:
                    outcomes.append(future.result(timeout=timeout_s))
                except cf.TimeoutError:
                    outcomes.append(Outcome("timeout", error=f"environment step exceeded {timeout_s} s"))
            return outcomes
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
