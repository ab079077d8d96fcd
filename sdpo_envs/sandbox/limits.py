"""Per-process resource limits (rlimits) derived from ``Limits``.

rlimits are the floor every backend can rely on: they are inherited by every descendant
and, once the hard value is lowered, cannot be raised again by the program. They are per
process, so the tree-wide totals come from cgroups where those are available.
"""

from __future__ import annotations

import math
import os
import resource
import shutil

from .base import Limits

MIB = 1 << 20
Rlimits = dict[int, tuple[int, int]]
# The sandbox tree runs at this nice value (set on its first process, inherited). With
# RLIMIT_NICE 0 and no CAP_SYS_NICE in the host's user namespace it cannot be lowered again,
# so a tree of busy threads yields to the supervisor that measures and stops it.
SANDBOX_NICE = 10
# ... and under SCHED_IDLE, which RLIMIT_NICE 0 keeps it in: the kernel lets any waking
# ordinary task preempt an idle-policy one at once, so however many threads the tree runs,
# the thread that watches its CPU counter is never queued behind them on a shared core.
SANDBOX_POLICY = os.SCHED_IDLE

_CLI_NAMES = {
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_AS: "as",
    resource.RLIMIT_NICE: "nice",
}


def memory_bytes(limits: Limits) -> int:
    return max(MIB, int(limits.memory_mb * MIB))


def disk_bytes(limits: Limits) -> int:
    # Never 0: a tmpfs "size=0" means *unlimited*.
    return max(1 << 16, int(limits.disk_mb * MIB))


def task_count(limits: Limits) -> int:
    return max(1, int(limits.processes))


def output_cap(limits: Limits) -> int:
    return max(1, int(limits.output_bytes))


def rlimits_for(limits: Limits, *, memory: bool, nproc: int | None) -> Rlimits:
    """The rlimits for one run.

    ``memory``: also cap the address space (only when no cgroup caps the tree, because
    virtual size over-counts: thread stacks and arenas are reserved, not used).
    ``nproc``: the RLIMIT_NPROC value, or ``None`` to leave it alone (when the count would
    be shared with unrelated processes of the same uid).
    """
    # The soft CPU limit sends SIGXCPU, the hard one SIGKILL a second later.
    cpu = max(1, math.ceil(limits.cpu_s))
    fsize = disk_bytes(limits)
    result: Rlimits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_FSIZE: (fsize, fsize),
        resource.RLIMIT_NICE: (0, 0),  # no way back below the nice value the tree starts with
    }
    if nproc is not None:
        result[resource.RLIMIT_NPROC] = (nproc, nproc)
    if memory:
        size = memory_bytes(limits)
        result[resource.RLIMIT_AS] = (size, size)
    return result


def apply_to_pid(pid: int, rlimits: Rlimits) -> None:
    """Set ``rlimits`` on a (stopped, not yet exec'd) process; raises ``OSError`` if refused."""
    for which, value in rlimits.items():
        resource.prlimit(pid, which, value)


def apply_to_self(rlimits: Rlimits) -> None:
    """Set ``rlimits`` on the calling process (a ``preexec_fn`` fallback)."""
    for which, value in rlimits.items():
        resource.setrlimit(which, value)


def prlimit_command(rlimits: Rlimits) -> list[str] | None:
    """An argv prefix that applies ``rlimits`` via util-linux ``prlimit``, or ``None``."""
    exe = shutil.which("prlimit", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if exe is None:
        return None
    return [exe, *(f"--{_CLI_NAMES[k]}={soft}:{hard}" for k, (soft, hard) in rlimits.items()), "--"]


def describe(rlimits: Rlimits) -> tuple[str, ...]:
    """Human-readable names of what ``rlimits`` enforce, for ``Isolation.enforced``."""
    parts = []
    for which, (soft, hard) in rlimits.items():
        if which == resource.RLIMIT_CPU:
            parts.append(f"rlimit-cpu {soft}s per process (hard {hard}s)")
        elif which == resource.RLIMIT_AS:
            parts.append(f"rlimit-as memory {soft // MIB} MiB per process")
        elif which == resource.RLIMIT_NPROC:
            parts.append(f"rlimit-nproc {soft}")
        elif which == resource.RLIMIT_FSIZE:
            parts.append(f"rlimit-fsize {soft // MIB} MiB")
        elif which == resource.RLIMIT_CORE:
            parts.append("rlimit-core 0")
        elif which == resource.RLIMIT_NICE:
            parts.append("rlimit-nice 0 (priority cannot be raised)")
    return tuple(parts)
