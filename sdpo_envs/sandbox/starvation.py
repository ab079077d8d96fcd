"""Wall-clock limits that a busy machine cannot spend: time a tree lost waiting for a CPU.

A wall clock is a backstop for programs that sleep or block; on a machine whose cores other
programs keep busy (the policy's other rollouts, another job), an honest tree can wait for a
CPU until its wall clock runs out and be scored ``time_limit`` for its neighbours' work. The
kernel counts, per thread, the time it was runnable but not running (``/proc/<tid>/schedstat``,
second field). At a wall-clock deadline: if the tree ran less than half the time (so its own
threads are not what it waited for), the deadline moves on by its longest wait; a tree still
starved at ``STARVE_FACTOR`` times the limit is reported as starved (an infrastructure failure,
run again) instead of timed out. The code judge's harness applies the same rule per test
(``judges/code/harness/procs.py``), and so does the docker backend's supervisor.
"""

from __future__ import annotations

import contextlib
import os

STARVE_FACTOR = 3.0
STARVED = "starved"
_MAX_TREE = 4096  # processes visited at most when adding up a tree


def tree_sched(root: int) -> tuple[float, float, bool]:
    """(CPU seconds run, longest wait for a CPU in seconds, whether a thread is runnable now)
    of ``root``'s live threads and descendants; ``(0.0, 0.0, False)`` where ``/proc`` does
    not say."""
    ran = waited = 0.0
    runnable = False
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
                    runnable = runnable or fh.read().rpartition(b")")[2].split()[0] == b"R"
                with open(base + "children", "rb") as fh:
                    todo.extend(int(child) for child in fh.read().split())
    return ran, waited, runnable


def stretched_deadline(start: float, wall_s: float, now: float, root: int) -> float | str | None:
    """At the deadline ``start + wall_s`` (``now``): a later deadline, ``STARVED``, or ``None``
    when the time was the program's own (see the module docstring)."""
    ran, waited, runnable = tree_sched(root)
    return _rule(start, wall_s, now, ran, waited, runnable)


def _rule(
    start: float, wall_s: float, now: float, ran: float, waited: float, runnable: bool
) -> float | str | None:
    if ran >= 0.5 * (now - start):
        return None  # it had its CPU: the time is its own
    deadline = start + wall_s + waited
    if deadline <= now:
        if not runnable:
            return None  # asleep or blocked: its own time
        deadline = now + wall_s / 4  # queued for a CPU right now
    return STARVED if deadline > start + STARVE_FACTOR * wall_s else deadline
