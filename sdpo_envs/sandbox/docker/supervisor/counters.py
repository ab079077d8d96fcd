"""What the supervisor reads about the container: CPU used by its tree, OOM kills, its CPU quota."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time


def first_existing(paths):
    for path in paths:
        try:
            with open(path) as handle:
                handle.read()
            return path
        except OSError:
            continue
    return None


# cgroup v1 (docker mounts the container's own cgroup at these paths) or v2 (cgroupns).
CPU_FILE = first_existing(
    (
        "/sys/fs/cgroup/cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu.stat",
    )
)
OOM_FILE = first_existing(("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"))
QUOTA_FILES = (
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"),
    ("/sys/fs/cgroup/cpu.max", None),
)


def cpu_quota():
    """The container's CPU bandwidth quota in CPUs, as the kernel holds it (None: none)."""
    for quota_file, period_file in QUOTA_FILES:
        try:
            with open(quota_file) as handle:
                words = handle.read().split()
            if period_file is not None:
                with open(period_file) as handle:
                    words.append(handle.read().strip())
        except OSError:
            continue
        if len(words) == 2 and words[0] not in ("max", "-1") and int(words[1]) > 0:
            return int(words[0]) / int(words[1])
        return None
    return None


def cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cgroup_cpu_s():
    """CPU seconds of every process in the container so far, or None when unreadable."""
    if CPU_FILE is None:
        return None
    try:
        with open(CPU_FILE) as handle:
            text = handle.read()
    except OSError:
        return None
    if CPU_FILE.endswith("cpu.stat"):
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None
    return int(text.strip()) / 1e9


def oom_kills():
    if OOM_FILE is None:
        return None
    try:
        with open(OOM_FILE) as handle:
            for line in handle:
                key, _, value = line.strip().partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def self_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def other_pids():
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def procfs_tree_cpu_s():
    """Fallback when no cgroup CPU file is readable: CPU of the live processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in other_pids():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is the state (field 3); utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(value) for value in fields[11:15])
    return total / tick


# The wall clock stretches by the time the tree waited for a CPU, up to this many times its
# limit (the rule of sdpo_envs/sandbox/starvation.py, which this stdlib-only copy follows).
STARVE_FACTOR = 10.0


def tree_sched():
    """(CPU seconds run, longest wait for a CPU, how many of its threads are runnable now) of the
    container's live threads but ours, from /proc/<pid>/task/<tid>/schedstat (run time, time
    runnable on a run queue) and stat (the state)."""
    ran = waited = 0.0
    runnable = 0
    for pid in other_pids()[:4096]:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as handle:
                    run_ns, wait_ns = handle.read().split()[:2]
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as handle:
                    state = handle.read().rpartition(b")")[2].split()[0]
            except (OSError, ValueError, IndexError):
                continue
            ran += int(run_ns) / 1e9
            waited = max(waited, int(wait_ns) / 1e9)
            runnable += state == b"R"
    return ran, waited, runnable


def stretched_deadline(start, wall_s, now):
    """At the wall-clock deadline: a later one when the tree ran less than half the time (its
    own threads are not what it waited for) and lost time waiting for a CPU (its longest
    wait, or a quarter of the limit while it is queued right now); "starved" past
    STARVE_FACTOR times the limit; None when the time was the program's own."""
    ran, waited, runnable = tree_sched()
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


def kill_all():
    """SIGKILL every process in the container except this one (PID 1)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)


class Usage:
    """Resource usage of one run, summed over every process it reaped."""

    def __init__(self):
        self.cpu_s = 0.0
        self.maxrss_kb = 0
        self.main_status = None
        self.main_pid = None
        self.main_exit_at = None

    def reap(self, block_s=0.0):
        """Reap every finished child (waiting up to ``block_s`` for the last ones)."""
        deadline = time.monotonic() + block_s
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
                continue
            self.cpu_s += usage.ru_utime + usage.ru_stime
            self.maxrss_kb = max(self.maxrss_kb, usage.ru_maxrss)
            if pid == self.main_pid:
                self.main_status = status
                self.main_exit_at = time.monotonic()
