"""Processes: a worker's leftovers (P and Z are subreapers) and how a process ended."""

import os
import time
from _signal import SIGKILL

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Callable, Collection
    from resource import struct_rusage
    from typing import Any, TypeVar

    T = TypeVar("T")


def quietly(fn: "Callable[..., T]", *args: "Any") -> "T | None":
    """Call ``fn``, ignoring OSError: for cleanup steps whose target may already be gone."""
    try:
        return fn(*args)
    except OSError:
        return None


def _children() -> list[int]:
    """Pids of this process's live children (/proc/self/task/*/children where the kernel has it)."""
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        pass
    found: list[int] = []
    for entry in quietly(os.listdir, "/proc") or []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    if int(handle.read().rsplit(b")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def reap_orphans(keep: "Collection[int]" = ()) -> None:
    """Kill what a worker left behind: its orphans are re-parented to us (a subreaper)."""
    for _ in range(50):
        found = False
        for pid in _children():
            if pid not in keep:
                found = quietly(os.kill, pid, SIGKILL) is None or found
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0 or pid in keep:
                break
            found = True
        if not found:
            return
        time.sleep(0.002)


def exit_info(status: int, usage: "struct_rusage") -> "dict[str, Any]":
    """How a reaped process ended: exit code or signal, CPU time, peak memory."""
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024.0,
    }


# The wall clock of a test stretches by the time its tree waited for a CPU, up to this many
# times its limit; past that the test is starved (the machine's fault), not slow.
STARVE_FACTOR = 10.0
_MAX_TREE = 4096  # processes visited at most when adding up a tree


def process_state(pid: int) -> str:
    """The state letter of ``pid`` (``R`` runnable, ``S`` asleep, ``T`` stopped, ...); ``""`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return ""


def tree_sched(root: int) -> "tuple[float, float, int]":
    """(CPU seconds run, longest wait for a CPU, how many of its threads are runnable now) of
    ``root``'s live threads and descendants, from ``/proc/<pid>/task/<tid>/schedstat`` (run
    time, time runnable on a run queue) and ``stat`` (the state)."""
    ran = waited = 0.0
    runnable = 0
    todo, seen = [root], set()
    while todo and len(seen) < _MAX_TREE:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for tid in quietly(os.listdir, f"/proc/{pid}/task") or []:
            base = f"/proc/{pid}/task/{tid}/"
            try:
                with open(base + "schedstat", "rb") as handle:
                    run_ns, wait_ns = handle.read().split()[:2]
                ran += int(run_ns) / 1e9
                waited = max(waited, int(wait_ns) / 1e9)
                with open(base + "stat", "rb") as handle:
                    runnable += handle.read().rpartition(b")")[2].split()[0] == b"R"
                with open(base + "children", "rb") as handle:
                    todo.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError, IndexError):
                pass
    return ran, waited, runnable


def stretched_deadline(start: float, wall_s: float, now: float, root: int) -> "float | str | None":
    """At a wall-clock deadline: a later one when the tree lost time waiting for a CPU that
    neighbours held (it ran less than half the time, so it is not its own threads that
    compete): by its longest wait, or a quarter of the limit while it is queued right now;
    ``"starved"`` past ``STARVE_FACTOR`` times the limit; ``None`` when the time was the
    program's own (it ran, slept or blocked). The rule of ``sdpo_envs/sandbox/starvation.py``."""
    ran, waited, runnable = tree_sched(root)
    if ran >= 0.5 * (now - start) or runnable > 1:
        return None  # it had its CPU, or its own threads are what it waits for
    deadline = start + wall_s + waited
    if deadline <= now:
        if not runnable:
            return None
        deadline = now + wall_s / 4
    if deadline <= start + STARVE_FACTOR * wall_s:
        return deadline
    # Out of allowance. Alone, on its one CPU, it would have had at most wall_s of CPU time
    # by its deadline; if it had that much, the time out is its own.
    return None if ran >= wall_s else "starved"
