"""The warm pool on a Ray cluster: one long-lived actor per node, running calls on its slots.

An actor keeps what judging warms up (the sandbox backends with their slots and containers,
the math-verify workers) for its whole life, as one host's process does, so a call pays only
for itself. Each node's actor gets ``slots`` concurrent calls (four per CPU the node offers,
as the local pool gives a host, at most 64); it reserves no CPU of its own, so it never
blocks the cluster's other work from scheduling. An actor receives work only once it has
answered a ping: a replacement on a node that is dying never swallows calls.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .local import LocalExecutor
from .outcome import Outcome

MAX_SLOTS_PER_NODE = 64
# Between two looks at the cluster's node table (for new nodes, or to replace a dead actor).
REFRESH_INTERVAL_S = 2.0


class NodeWorker:
    """Runs chunks of calls inside one Ray actor (threaded: ``max_concurrency`` is its slots)."""

    def ping(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def run_chunk(self, fn: Any, items: list[Any], timeout_s: float | None) -> list[Outcome]:
        """Several calls at once, exactly as the local pool runs a batch: one thread each, a
        call past ``timeout_s`` abandoned (its sandbox has its own limits)."""
        return LocalExecutor(len(items)).map(fn, items, timeout_s=timeout_s)


@dataclass(eq=False)
class Worker:
    """The driver's view of one node's actor."""

    handle: Any
    node_id: str
    slots: int
    busy: int = 0
    ready: bool = False
    ping: Any = None
    hung: dict[Any, int] = field(default_factory=dict)  # abandoned chunks still running -> their calls

    @property
    def free(self) -> int:
        return self.slots - self.busy if self.ready else 0


def node_slots(node: dict[str, Any], slots_per_node: int | None) -> int:
    if slots_per_node is not None:
        return slots_per_node
    cpus = float(node.get("Resources", {}).get("CPU", 1.0))
    return max(1, min(MAX_SLOTS_PER_NODE, int(4 * cpus)))


class NodePool:
    """One ``NodeWorker`` actor per alive node; replaces those that die while their node lives."""

    def __init__(self, ray: ModuleType, slots_per_node: int | None = None) -> None:
        if slots_per_node is not None and slots_per_node < 1:
            raise ValueError(f"slots_per_node must be >= 1, got {slots_per_node}")
        self._ray = ray
        self._actor_class = ray.remote(NodeWorker)
        self.slots_per_node = slots_per_node
        self.workers: dict[str, Worker] = {}  # node id -> its actor
        self._refreshed_at = -float("inf")
        self.actors_started = 0
        self.actors_lost = 0

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]

    def refresh(self, *, force: bool = False) -> None:
        """Start an actor on each alive node that has none (at most every few seconds)."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < REFRESH_INTERVAL_S:
            return
        self._refreshed_at = now
        strategy = self._ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
        for node in self.alive_nodes():
            node_id = node["NodeID"]
            if node_id in self.workers:
                continue
            slots = node_slots(node, self.slots_per_node)
            handle = self._actor_class.options(
                num_cpus=0,
                max_concurrency=slots,
                max_restarts=0,  # a dead actor's calls are re-run by the executor, never by Ray
                max_task_retries=0,
                scheduling_strategy=strategy(node_id=node_id, soft=False),
            ).remote()
            self.workers[node_id] = Worker(handle, node_id, slots, ping=handle.ping.remote())
            self.actors_started += 1

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Mark actors that answered their ping ready; drop those whose start failed; free the
        slots of abandoned calls that have finished. Whether any actor was starting."""
        pings = {w.ping: w for w in self.workers.values() if not w.ready}
        if pings:
            done, _ = self._ray.wait(list(pings), num_returns=len(pings), timeout=timeout_s)
            for ref in done:
                worker = pings[ref]
                try:
                    self._ray.get(ref)
                    worker.ready = True
                except self._ray.exceptions.RayError:
                    self.retire(worker)
        for worker in self.workers.values():
            if worker.hung:
                done, _ = self._ray.wait(list(worker.hung), num_returns=len(worker.hung), timeout=0)
                for ref in done:
                    worker.busy -= worker.hung.pop(ref)
        return bool(pings)

    def take(self, calls: int) -> tuple[Worker, int] | None:
        """The ready actor with the most free slots and up to ``calls`` of them, now taken."""
        best = max(self.workers.values(), key=lambda w: w.free, default=None)
        if best is None or best.free <= 0:
            return None
        taken = min(calls, best.free)
        best.busy += taken
        return best, taken

    def retire(self, worker: Worker) -> None:
        """Forget an actor that failed (and make sure it is gone: it may only be unreachable)."""
        if self.workers.get(worker.node_id) is worker:
            del self.workers[worker.node_id]
            self.actors_lost += 1
        with contextlib.suppress(Exception):  # already dead, or its node is: nothing left to stop
            self._ray.kill(worker.handle, no_restart=True)

    @property
    def ready_slots(self) -> int:
        return sum(w.slots for w in self.workers.values() if w.ready)

    def close(self) -> None:
        for worker in list(self.workers.values()):
            self.retire(worker)
            self.actors_lost -= 1  # stopped, not lost
