"""``RayExecutor``: environment steps and judge calls on a Ray cluster's warm node pool.

The driver keeps every call until it has its one result: at most the pool's free slots are
in flight (bounded work, nothing queued inside Ray), each on a node's long-lived actor
(``ray_nodes``). When an actor or its node dies mid-batch, the calls it held are re-run on
the others -- a call is a pure function of the env state it carries, so a re-run gives the
verdict the lost run would have -- and each call's first result is its only one: no call is
lost, none is scored twice. Only when the machinery fails ``max_attempts`` times for one call
(or no node is left for ``worker_wait_s``) does that call become an ``infrastructure``
outcome (a ``judge_error`` step), never a verdict on the policy. A program's own timeout is
the sandbox's verdict inside the call and stays the program's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .base import Executor
from .outcome import Outcome
from .ray_nodes import NodePool, Worker
from .ray_runtime import DEFAULT_CONNECT_TIMEOUT_S, connect

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_WORKER_WAIT_S = 60.0
_POLL_S = 0.5
# Calls travel in chunks of up to half an actor's slots (so two chunks keep a node busy): one
# Ray task per chunk, not per call, which is most of Ray's cost for a millisecond call.
MAX_CHUNK = 16
# A chunk's calls time out on the actor, as in the local pool; the driver gives up on a chunk
# only this long after that (the actor itself is stuck), as a timeout of its calls.
_DRIVER_GRACE_S = 30.0


class RayExecutor(Executor):
    """Runs calls on one warm actor per node of the Ray cluster at ``address``.

    ``slots_per_node``: concurrent calls per node (default four per CPU the node offers, at
    most 64); ``max_in_flight``: a cap on calls in flight over the whole cluster (default: all
    slots); ``max_attempts``: tries per call before an infrastructure failure is reported;
    ``worker_wait_s``: how long a batch waits for any node's actor to come up.
    """

    name = "ray"
    remote = True

    def __init__(
        self,
        address: str | None = None,
        *,
        slots_per_node: int | None = None,
        max_in_flight: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        worker_wait_s: float = DEFAULT_WORKER_WAIT_S,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.address = address
        self._ray = connect(address, timeout_s=connect_timeout_s)
        self.pool = NodePool(self._ray, slots_per_node)
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.worker_wait_s = worker_wait_s
        self.stats = {"calls": 0, "completed": 0, "retries": 0, "infrastructure_failures": 0}
        self.closed = False
        self._lock = threading.Lock()  # one batch at a time: the pool's slot counts are not shared
        self.pool.refresh(force=True)

    def wait_ready(self, nodes: int = 1, timeout_s: float = DEFAULT_WORKER_WAIT_S) -> int:
        """Block until ``nodes`` actors answer (warm-up, benchmarks); the number ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pool.refresh()
            starting = self.pool.poll(timeout_s=_POLL_S)
            ready = sum(w.ready for w in self.pool.workers.values())
            if ready >= nodes:
                return ready
            if not starting:
                time.sleep(_POLL_S)  # wait for a node to join
        return sum(w.ready for w in self.pool.workers.values())

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, timeout_s: float | None = None
    ) -> list[Outcome]:
        if self.closed:
            raise RuntimeError("this RayExecutor was closed")
        with self._lock:
            return _Batch(self, fn, items, timeout_s).run()

    def close(self) -> None:
        self.closed = True
        self.pool.close()


class _Batch:
    """One ``map`` call's bookkeeping: pending calls, calls in flight, one result per call."""

    def __init__(
        self, executor: RayExecutor, fn: Callable[[Any], Any], items: Sequence[Any], timeout_s: float | None
    ) -> None:
        self.ex, self.ray, self.pool = executor, executor._ray, executor.pool
        self.fn_ref = self.ray.put(fn)  # shipped once per batch, not once per call
        self.items, self.timeout_s = list(items), timeout_s
        self.results: list[Outcome | None] = [None] * len(self.items)
        self.attempts = [0] * len(self.items)
        self.errors: list[str] = [""] * len(self.items)
        self.pending = deque(range(len(self.items)))
        self.in_flight: dict[Any, tuple[list[int], Worker, float]] = {}  # ref -> calls, actor, deadline
        executor.stats["calls"] += len(self.items)

    def run(self) -> list[Outcome]:
        starved_since: float | None = None
        while self.pending or self.in_flight:
            self.pool.refresh()
            self.pool.poll()
            self._submit()
            if not self.in_flight:
                starved_since = starved_since or time.monotonic()
                if time.monotonic() - starved_since > self.ex.worker_wait_s:
                    self._give_up_pending()
                    break
                if not self.pool.poll(timeout_s=_POLL_S):
                    time.sleep(_POLL_S)  # no actor is starting either: look again shortly
                continue
            starved_since = None
            self._collect()
            self._expire()
        return [r if r is not None else Outcome("infrastructure", error="lost") for r in self.results]

    def _chunk_size(self) -> int:
        slots = [w.slots for w in self.pool.workers.values() if w.ready] or [1]
        fair = -(-len(self.pending) // sum(slots))  # spread what is left over every slot
        return max(1, min(MAX_CHUNK, max(slots) // 2, fair))

    def _submit(self) -> None:
        cap = self.ex.max_in_flight
        while self.pending:
            room = len(self.pending) if cap is None else cap - self._calls_in_flight()
            taken = self.pool.take(min(room, self._chunk_size())) if room > 0 else None
            if taken is None:
                return
            worker, size = taken
            chunk = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
            worker.busy -= size - len(chunk)
            for index in chunk:
                self.attempts[index] += 1
            try:
                ref = worker.handle.run_chunk.remote(
                    self.fn_ref, [self.items[i] for i in chunk], self.timeout_s
                )
            except TypeError as exc:  # Ray could not pickle it: a usage error, not a verdict
                worker.busy -= len(chunk)
                self._abandon_in_flight()
                raise TypeError(
                    f"a call ({type(self.items[chunk[0]]).__name__}) cannot be sent to a Ray worker: "
                    f"{_first_line(exc)}; make it picklable or use judge_backend='local'"
                ) from exc
            self.in_flight[ref] = (chunk, worker, self._deadline(len(chunk)))

    def _deadline(self, calls: int) -> float:
        if self.timeout_s is None:
            return float("inf")
        return time.monotonic() + self.timeout_s * calls + _DRIVER_GRACE_S

    def _calls_in_flight(self) -> int:
        return sum(len(chunk) for chunk, _, _ in self.in_flight.values())

    def _abandon_in_flight(self) -> None:
        for ref, (chunk, worker, _) in self.in_flight.items():
            worker.hung[ref] = len(chunk)  # their slots come back when they end
        self.in_flight.clear()

    def _collect(self) -> None:
        soonest = min(deadline for _, _, deadline in self.in_flight.values())
        wait_s = max(0.0, min(_POLL_S, soonest - time.monotonic()))
        self.ray.wait(list(self.in_flight), num_returns=1, timeout=wait_s)
        # Take every chunk that is already done, not just the first.
        done, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
        for ref in done:
            chunk, worker, _ = self.in_flight.pop(ref)
            worker.busy -= len(chunk)
            try:
                outcomes = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as exc:  # the calls could not even start there
                outcomes = [Outcome("raised", error=_first_line(exc))] * len(chunk)
            except self.ray.exceptions.RayError as exc:  # the actor, its node or the link failed
                self.pool.retire(worker)
                for index in reversed(chunk):
                    self._lost(index, exc)
                continue
            for index, outcome in zip(chunk, outcomes):
                self._deliver(index, outcome)

    def _lost(self, index: int, exc: Exception) -> None:
        self.errors[index] = f"{type(exc).__name__}: {_first_line(exc)}"
        if self.attempts[index] < self.ex.max_attempts:
            self.ex.stats["retries"] += 1
            self.pending.appendleft(index)
            return
        self.ex.stats["infrastructure_failures"] += 1
        self._deliver(
            index,
            Outcome(
                "infrastructure",
                error=f"Ray worker failed on all {self.attempts[index]} attempts; last: {self.errors[index]}",
            ),
        )

    def _deliver(self, index: int, outcome: Outcome) -> None:
        if self.results[index] is None:  # the first result of a call is its only one
            self.results[index] = Outcome(outcome.kind, outcome.value, outcome.error, self.attempts[index])
            self.ex.stats["completed"] += 1

    def _expire(self) -> None:
        now = time.monotonic()
        for ref, (chunk, worker, deadline) in list(self.in_flight.items()):
            if now >= deadline:  # the actor did not even report its calls' own timeouts
                del self.in_flight[ref]
                worker.hung[ref] = len(chunk)  # its slots stay taken until it ends
                for index in chunk:
                    self._deliver(
                        index, Outcome("timeout", error=f"environment step exceeded {self.timeout_s} s")
                    )

    def _give_up_pending(self) -> None:
        nodes = len(self.pool.alive_nodes())
        hung = sum(sum(w.hung.values()) for w in self.pool.workers.values())
        reason = (
            f"no Ray worker was available for {self.ex.worker_wait_s:g} s "
            f"(cluster at {self.ex.address or 'the default address'}: {nodes} alive node(s) with CPUs, "
            f"{hung} slot(s) held by calls abandoned at the timeout)"
        )
        while self.pending:
            index = self.pending.popleft()
            self.ex.stats["infrastructure_failures"] += 1
            last = f"; last: {self.errors[index]}" if self.errors[index] else ""
            self._deliver(index, Outcome("infrastructure", error=reason + last))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
