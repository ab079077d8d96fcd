"""Wall-clock limits that a busy machine cannot spend: time a tree lost waiting for a CPU.

A wall clock is a backstop for programs that sleep or block; on a machine whose cores other
programs keep busy (the policy's other rollouts, another job), an honest tree can wait for a
CPU until its wall clock runs out and be scored ``time_limit`` for its neighbours' work. The
kernel counts, per thread, the time it was runnable but not running (``/proc/<tid>/schedstat``,
second field; brought up to date each time the thread gets a CPU). At a wall-clock deadline,
if the tree ran less than half the time and at most one of its threads is runnable (so its
own threads are not what it waits for: a fork bomb is charged as before), the deadline moves
on by its longest wait, or by a quarter of the limit when its thread is queued for a CPU right
now; a tree that sleeps or blocks is charged as before. A tree still starved at
``STARVE_FACTOR`` times the limit is reported as starved (an infrastructure failure, run
again) instead of timed out, unless it has had by then as much CPU time as its wall clock
(all it could have had alone, on its one CPU): then the time out is its own. The code judge's
harness applies the same rule per test (``judges/code/harness/procs.py``), and so does the
docker backend's supervisor.
"""

from __future__ import annotations

import contextlib
import os

STARVE_FACTOR = 10.0
STARVED = "starved"
_MAX_TREE = 4096  # processes visited at most when adding up a tree


def tree_sched(root: int) -> tuple[float, float, int]:
    """(CPU seconds run, longest wait for a CPU in seconds, how many of its threads are
    runnable now) of ``root``'s live threads and descendants; ``(0.0, 0.0, 0)`` where ``/proc`` does
    not say."""
    ran = waited = 0.0
    runnable = 0
    todo, seen = [root], set()
    while todo and len(seen) < _MAX_TREE:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}/"
            with contextlib.suppress(OSError, ValueError):
                with open(base + "schedstat", "rb") as fh:
                    run_ns, wait_ns = fh.read().split()[:2]
                ran += int(run_ns) / 1e9
                waited = max(waited, int(wait_ns) / 1e9)
                with open(base + "stat", "rb") as fh:
                    runnable += fh.read().rpartition(b")")[2].split()[0] == b"R"
                with open(base + "children", "rb") as fh:
                    todo.extend(int(child) for child in fh.read().split())
    return ran, waited, runnable


def stretched_deadline(start: float, wall_s: float, now: float, root: int) -> float | str | None:
    """At the deadline ``start + wall_s`` (``now``): a later deadline, ``STARVED``, or ``None``
    when the time was the program's own (see the module docstring)."""
    ran, waited, runnable = tree_sched(root)
    return _rule(start, wall_s, now, ran, waited, runnable)


def _rule(
    start: float, wall_s: float, now: float, ran: float, waited: float, runnable: int
) -> float | str | None:
    if ran >= 0.5 * (now - start) or runnable > 1:
        return None  # it had its CPU, or its own threads are what it waits for
    deadline = start + wall_s + waited
    if deadline <= now:
        if not runnable:
            return None  # asleep or blocked: its own time
        deadline = now + wall_s / 4  # queued for a CPU right now
    if deadline <= start + STARVE_FACTOR * wall_s:
        return deadline
    # Out of allowance. Alone, on its one CPU, it would have had at most wall_s of CPU time
    # by its deadline; if it had that much, the time out is its own.
    return None if ran >= wall_s else STARVED
