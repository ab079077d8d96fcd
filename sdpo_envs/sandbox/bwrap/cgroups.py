"""cgroup v1/v2 control groups for sandboxed runs: memory cap, task cap, tree CPU time and
a CPU bandwidth quota.

Groups are created under the caller's own cgroup (so limits set on us by a container or a
service manager still apply to the sandboxes), one set per concurrent *slot*, and reused
from run to run: on cgroup v1 a run only rewrites a few counters, which is much cheaper
than mkdir/rmdir. On cgroup v2 a leaf is made per run (``memory.peak`` cannot be reset on
older kernels), and only where our cgroup may enable controllers for its children.

The CPU bandwidth quota (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``) is what keeps a tree of
many busy threads from taking every core, and so from starving the host thread that reads
the tree's CPU counter and stops it at ``Limits.cpu_s``: the kernel lets the tree use at
most ``Limits.cpus`` cores per 100 ms period. The per-process parent group holding every
slot has a quota too (all cores but a quarter of them, at most one core: 1.5 of 2), so
concurrent sandboxes together never take every core from the supervising threads either.
It weighs like one ordinary process per slot, so sandboxes get the CPU share they had
before they had a group.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from dataclasses import dataclass

from ..base import Limits
from ..limits import memory_bytes
from .cgroup_layout import ROOT_NAME, Layout, layout

__all__ = ["CPU_PERIOD_US", "CgroupStats", "SlotCgroup", "layout"]

MIB = 1 << 20
CPU_PERIOD_US = 100_000  # the kernel's default period; the quota is Limits.cpus of it
_V1_SHARES, _V1_SHARES_MAX = 1024, 262_144  # cpu.shares of one ordinary process, the kernel's cap
_V2_WEIGHT, _V2_WEIGHT_MAX = 100, 10_000


@dataclass
class CgroupStats:
    cpu_s: float | None = None
    peak_memory_mb: float | None = None
    oom_killed: bool = False
    forks_refused: int = 0


_slot_lock = threading.Lock()
_live_slots = [0]  # slot groups of this process that exist now (for the parent's CPU weight)


class SlotCgroup:
    """The cgroups of one slot; used by one run at a time (not thread-safe by itself)."""

    def __init__(self, lay: Layout, name: str) -> None:
        self.version = lay.version
        self.dirs: dict[str, str] = {}
        for ctrl, parent in lay.parents.items():
            path = os.path.join(parent, ROOT_NAME, name)
            os.makedirs(path, exist_ok=True)
            self.dirs[ctrl] = path
        if self.version == "v2":
            # v2 hands controllers down one level at a time; runs live in leaves below.
            enable = " ".join("+" + c for c in lay.parents)
            slot_dir = self.dirs[next(iter(self.dirs))]
            _write(os.path.join(os.path.dirname(slot_dir), "cgroup.subtree_control"), enable)
            _write(os.path.join(slot_dir, "cgroup.subtree_control"), enable)
        self.missing_reason = lay.reason
        self.quota_error = ""  # why no CPU bandwidth quota can be set here
        self._counted = False  # counted in _live_slots (the parent's CPU weight)
        self.shared_quota_us: int | None = None  # the quota of all slots of this process together
        self.bandwidth = self._probe_bandwidth()
        swap_file = "memory.memsw.limit_in_bytes" if self.version == "v1" else "memory.swap.max"
        self.swap_capped = self.memory and os.path.exists(os.path.join(self.dirs["memory"], swap_file))
        self._memory_limit: int | None = None  # last values written, to skip rewrites
        self._pids_max: int | None = None
        self._quota_us: int | None = None
        self.quota_cpus: float | None = None  # the quota in force for the current run, in CPUs
        self._oom_base = 0
        self._forks_base = 0
        self._fds: dict[str, int] = {}  # v1: hot files stay open between runs (pread/pwrite)
        self._run_dir: str | None = None  # v2: this run's leaf
        self._old_leaves: list[str] = []  # v2: leaves still holding unreaped zombies
        self._runs = 0

    @property
    def memory(self) -> bool:
        return "memory" in self.dirs

    @property
    def pids(self) -> bool:
        return "pids" in self.dirs

    @property
    def cpu_accounting(self) -> bool:
        """The tree's CPU time can be read (v1 ``cpuacct``, v2 ``cpu.stat``)."""
        return ("cpuacct" if self.version == "v1" else "cpu") in self.dirs

    def describe(self, limits: Limits, tasks: int) -> tuple[str, ...]:
        tag = f"cgroup-{self.version}"
        parts = []
        if self.memory:
            swap = "swap included" if self.swap_capped else "swap not capped"
            parts.append(f"{tag} memory {limits.memory_mb} MiB (whole tree, {swap})")
        if self.pids:
            parts.append(f"{tag} pids {tasks} tasks")
        if self.cpu_accounting:
            parts.append(f"{tag} cpu accounting (tree CPU {limits.cpu_s:g}s enforced)")
        if self.quota_cpus is not None:
            parts.append(
                f"{tag} cpu quota {self.quota_cpus:g} CPU "
                f"({round(self.quota_cpus * CPU_PERIOD_US)} us per {CPU_PERIOD_US} us, whole tree)"
            )
        if self.shared_quota_us is not None:
            parts.append(
                f"{tag} cpu quota {self.shared_quota_us / CPU_PERIOD_US:g} CPU for all concurrent sandboxes "
                f"together (of {_cores()}: the rest stays for the supervisor)"
            )
        return tuple(parts)

    def missing(self) -> tuple[str, ...]:
        """What this slot cannot enforce, for ``Isolation.missing``."""
        out = [self.missing_reason] if self.missing_reason else []
        if self.quota_cpus is None:
            out.append(f"cgroup cpu quota ({self.quota_error or 'the cpu controller is not writable'})")
        return tuple(out)

    # -- CPU bandwidth ----------------------------------------------------------------------
    def _quota_file(self) -> str:
        return "cpu.cfs_quota_us" if self.version == "v1" else "cpu.max"

    def _probe_bandwidth(self) -> bool:
        """Whether a quota can be written here; also sets the period and the parent's share."""
        if "cpu" not in self.dirs:
            self.quota_error = "the cpu controller is not writable"
            return False
        slot_dir = self.dirs["cpu"]
        if not os.path.exists(os.path.join(slot_dir, self._quota_file())):
            self.quota_error = "the kernel has no CPU bandwidth control (CONFIG_CFS_BANDWIDTH)"
            return False
        try:
            period = os.path.join(slot_dir, "cpu.cfs_period_us")
            if self.version == "v1" and _read(period).strip() != str(CPU_PERIOD_US):
                _write(period, str(CPU_PERIOD_US))
            with _slot_lock:
                _live_slots[0] += 1
                self._counted = True
                self.shared_quota_us = _set_parent_cpu(
                    self.version, os.path.dirname(slot_dir), _live_slots[0]
                )
        except OSError as exc:
            self.quota_error = f"cpu controller: {exc.strerror or exc}"
            return False
        return True

    def _set_quota(self, cpus: float) -> None:
        """Write the tree's quota (``cpus`` cores per period); a parent's lower quota wins."""
        quota = max(1000, round(cpus * CPU_PERIOD_US))
        if self.shared_quota_us is not None:
            quota = min(quota, self.shared_quota_us)  # v1 refuses more; v2 would not give it
        if self.version == "v1" and quota == self._quota_us:
            return
        for _ in range(2):
            try:
                if self.version == "v1":
                    self._put("cpu", "cpu.cfs_quota_us", str(quota))
                else:
                    self._put("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}")
            except OSError as exc:
                # v1 refuses a child quota above an ancestor's (a container's --cpus): use that.
                ceiling = _ancestor_quota(self.dirs["cpu"]) if exc.errno == errno.EINVAL else None
                if ceiling is None or ceiling >= quota:
                    self._quota_us = self.quota_cpus = None
                    self.quota_error = f"writing the quota failed: {exc.strerror or exc}"
                    return
                quota = ceiling
                continue
            self._quota_us = quota
            self.quota_cpus = quota / CPU_PERIOD_US
            return

    # -- file access ----------------------------------------------------------------------
    def _path(self, ctrl: str, name: str) -> str:
        base = self._run_dir if self.version == "v2" and self._run_dir else self.dirs[ctrl]
        return os.path.join(base, name)

    def _put(self, ctrl: str, name: str, data: str) -> None:
        if self.version == "v2":
            _write(self._path(ctrl, name), data)
        else:
            os.pwrite(self._cached_fd(ctrl, name, os.O_WRONLY), data.encode(), 0)

    def _get(self, ctrl: str, name: str) -> str:
        if self.version == "v2":
            with open(self._path(ctrl, name)) as fh:
                return fh.read()
        return os.pread(self._cached_fd(ctrl, name, os.O_RDONLY), 1 << 16, 0).decode()

    def _cached_fd(self, ctrl: str, name: str, mode: int) -> int:
        key = f"{ctrl}/{name}/{mode}"
        fd = self._fds.get(key)
        if fd is None:
            fd = self._fds[key] = os.open(self._path(ctrl, name), mode | os.O_CLOEXEC)
        return fd

    def _field(self, ctrl: str, name: str, key: str) -> int:
        for line in self._get(ctrl, name).splitlines():
            field_name, _, value = line.partition(" ")
            if field_name == key:
                return int(value)
        return 0

    # -- per run --------------------------------------------------------------------------
    def prepare(self, limits: Limits, tasks: int) -> None:
        """Set limits and zero the counters before a run."""
        if self.version == "v2":
            self._new_leaf()
        if self.bandwidth:
            self._set_quota(limits.cpus)
        mem = memory_bytes(limits)
        if self.memory and mem != self._memory_limit:
            self._set_memory(mem)
        if self.pids:
            # bwrap's pid 1 outlives bwrap and is reaped by whoever adopts it (the host's
            # init, which may take seconds); until then it still counts here. Allow for it
            # so lingering zombies of earlier runs never eat into this run's task budget.
            want = tasks + int(self._get("pids", "pids.current"))
            if want != self._pids_max:
                self._put("pids", "pids.max", str(want))
                self._pids_max = want
            self._forks_base = self._field("pids", "pids.events", "max")
        if self.version == "v2":
            return
        if self.memory:
            self._put("memory", "memory.max_usage_in_bytes", "0")
            self._oom_base = self._field("memory", "memory.oom_control", "oom_kill")
        if self.cpu_accounting:
            self._put("cpuacct", "cpuacct.usage", "0")

    def _set_memory(self, mem: int) -> None:
        if self.version == "v2":
            self._put("memory", "memory.max", str(mem))
            if self.swap_capped:
                self._put("memory", "memory.swap.max", "0")
        else:
            limit = self._path("memory", "memory.limit_in_bytes")
            memsw = self._path("memory", "memory.memsw.limit_in_bytes")
            # memsw must stay >= limit at every step, so the order depends on the direction.
            lowering = self._memory_limit is None or mem < self._memory_limit
            if self.swap_capped and not lowering:
                _write(memsw, str(mem))
            _write(limit, str(mem))
            if self.swap_capped and lowering:
                _write(memsw, str(mem))
        self._memory_limit = mem

    def _new_leaf(self) -> None:
        """v2: a fresh leaf per run (counters such as ``memory.peak`` cannot be reset)."""
        self._old_leaves = [leaf for leaf in self._old_leaves if not _try_rmdir(leaf)]
        self._runs += 1
        base = self.dirs[next(iter(self.dirs))]
        self._run_dir = os.path.join(base, f"run-{self._runs}")
        os.mkdir(self._run_dir)
        self._memory_limit = self._pids_max = self._quota_us = None
        self._oom_base = self._forks_base = 0

    def attach(self, pid: int) -> None:
        """Move ``pid`` (stopped before exec) into this slot's groups."""
        data = str(pid)
        done = set()
        for ctrl, path in self.dirs.items():
            if path not in done:  # v2: one unified hierarchy; v1 "cpu,cpuacct": one group
                done.add(path)
                self._put(ctrl, "cgroup.procs", data)

    def cpu_s(self) -> float | None:
        """CPU seconds used by the tree so far."""
        if not self.cpu_accounting:
            return None
        if self.version == "v2":
            return self._field("cpu", "cpu.stat", "usage_usec") / 1e6
        return int(self._get("cpuacct", "cpuacct.usage")) / 1e9

    def stats(self) -> CgroupStats:
        out = CgroupStats(cpu_s=self.cpu_s())
        if self.memory:
            if self.version == "v2":
                if os.path.exists(self._path("memory", "memory.peak")):
                    out.peak_memory_mb = int(self._get("memory", "memory.peak")) / MIB
                oom = self._field("memory", "memory.events", "oom_kill")
            else:
                out.peak_memory_mb = int(self._get("memory", "memory.max_usage_in_bytes")) / MIB
                oom = self._field("memory", "memory.oom_control", "oom_kill")
            out.oom_killed = oom > self._oom_base
        if self.pids:
            out.forks_refused = self._field("pids", "pids.events", "max") - self._forks_base
        return out

    def signal_all(self) -> None:
        """SIGKILL every process in the slot at once, without waiting for them to go.

        Stopping a run by killing only its pid 1 lets the rest of the tree run on until
        pid 1's threads are scheduled (behind every busy thread of a throttled group) and
        the kernel tears the pid namespace down: tenths of a CPU second past the limit.
        """
        ctrl = "pids" if self.pids else next(iter(self.dirs))
        kill_file = self._path(ctrl, "cgroup.kill")
        if self.version == "v2" and os.path.exists(kill_file):
            _write(kill_file, "1")
            return
        for pid in self._procs(ctrl):
            _kill_if_member(pid, self._path(ctrl, ""))

    def kill_all(self) -> int:
        """SIGKILL every task still in the slot; returns how many were found."""
        if self.pids and self._get("pids", "pids.current").strip() == "0":
            return 0  # the usual case, and a cheaper read than the task list
        ctrl = "pids" if self.pids else next(iter(self.dirs))
        kill_file = self._path(ctrl, "cgroup.kill")
        if self.version == "v2" and os.path.exists(kill_file):
            pids = self._procs(ctrl)
            if pids:
                _write(kill_file, "1")
            return len(pids)
        found: set[int] = set()
        for _ in range(100):  # a task may fork while we kill; repeat until the group is empty
            pids = self._procs(ctrl)
            if not pids:
                break
            found.update(pids)
            for pid in pids:
                _kill_if_member(pid, self._path(ctrl, ""))
            time.sleep(0.002)  # let the kernel finish their exit
        return len(found)

    def _procs(self, ctrl: str) -> list[int]:
        # A fresh open, never a kept fd: on v1 a second read through the same open file
        # may be served from the kernel's cached pid list, which can be a second old.
        try:
            return [int(x) for x in _read(self._path(ctrl, "cgroup.procs")).split()]
        except OSError:
            return []

    def finish(self) -> None:
        """After a run (v1 groups are kept for the next one; a v2 leaf is dropped)."""
        if self.version == "v2" and self._run_dir:
            if not _try_rmdir(self._run_dir):
                self._old_leaves.append(self._run_dir)
            self._run_dir = None

    def remove(self, wait_s: float = 3.0) -> None:
        """Delete the slot's groups, waiting a little for zombies to be reaped."""
        self.finish()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._counted:
            self._counted = False
            with _slot_lock:
                _live_slots[0] -= 1
                with contextlib.suppress(OSError):
                    _set_parent_cpu(self.version, os.path.dirname(self.dirs["cpu"]), _live_slots[0])
        deadline = time.monotonic() + wait_s
        leftovers = [*self._old_leaves, *self.dirs.values()]
        while leftovers:
            leftovers = [path for path in leftovers if not _try_rmdir(path)]
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        for path in self.dirs.values():
            _try_rmdir(os.path.dirname(path))  # the per-process parent, once empty


def _try_rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY: zombies not reaped yet
        return False
    return True


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except OSError:  # pragma: no cover - Linux always has it
        return max(1, os.cpu_count() or 1)


def shared_quota_us() -> int:
    """The quota of all of this process's sandboxes together: every core but a quarter of
    them, at most one, so that the threads watching the sandboxes always find a free core."""
    cores = _cores()
    return round((cores - min(1.0, cores / 4)) * CPU_PERIOD_US)


def _set_parent_cpu(version: str, parent: str, slots: int) -> int | None:
    """The per-process group weighs like ``slots`` ordinary processes (at least one) and gets
    the shared quota; returns that quota, or ``None`` when it could not be set."""
    if version == "v1":
        _write(os.path.join(parent, "cpu.shares"), str(min(_V1_SHARES_MAX, _V1_SHARES * max(1, slots))))
    else:
        _write(os.path.join(parent, "cpu.weight"), str(min(_V2_WEIGHT_MAX, _V2_WEIGHT * max(1, slots))))
    quota = shared_quota_us()
    try:
        if version == "v1":
            _write(os.path.join(parent, "cpu.cfs_quota_us"), str(quota))
        else:
            _write(os.path.join(parent, "cpu.max"), f"{quota} {CPU_PERIOD_US}")
    except OSError:  # e.g. an ancestor's lower quota (a container's --cpus) already caps us
        return None
    return quota


def _ancestor_quota(slot_dir: str) -> int | None:
    """v1: the smallest quota of an ancestor of ``slot_dir``, per ``CPU_PERIOD_US`` (None: none)."""
    best = None
    path = os.path.dirname(slot_dir)
    while True:
        try:
            quota = int(_read(os.path.join(path, "cpu.cfs_quota_us")))
            period = int(_read(os.path.join(path, "cpu.cfs_period_us")))
        except (OSError, ValueError):
            return best
        if quota > 0 and period > 0:
            scaled = quota * CPU_PERIOD_US // period
            best = scaled if best is None else min(best, scaled)
        parent = os.path.dirname(path)
        if parent == path:
            return best
        path = parent


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _kill_if_member(pid: int, group_dir: str) -> None:
    """SIGKILL ``pid`` only if it is still in ``group_dir`` (pids get reused)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        rel = group_dir.rstrip("/")
        with open(f"/proc/{pid}/cgroup") as fh:
            member = any(rel.endswith(line.rstrip("\n").split(":", 2)[2]) for line in fh)
        if member:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.ENOENT):
            raise
    finally:
        os.close(pidfd)
