"""Processes: a worker's leftovers (P and Z are subreapers) and how a process ended."""

import os
import time
from _signal import SIGKILL


def quietly(fn, *args):
    """Call ``fn``, ignoring OSError: for cleanup steps whose target may already be gone."""
    try:
        return fn(*args)
    except OSError:
        return None


def _children():
    """Pids of this process's live children (/proc/self/task/*/children where the kernel has it)."""
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        pass
    found = []
    for entry in quietly(os.listdir, "/proc") or []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    if int(handle.read().rsplit(b")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def reap_orphans(keep=()):
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


def exit_info(status, usage):
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024.0,
    }
