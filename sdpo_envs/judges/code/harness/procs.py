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
