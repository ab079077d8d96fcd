"""One ``bwrap`` run inside a slot: spawn, confine, release, watch, reap, classify.

1. ``bwrap`` starts as the slot's uid with ``--info-fd`` (reports the sandbox's pid 1) and
   ``--block-fd`` (pid 1 waits there after all mounts, before it forks the program).
2. While pid 1 waits we set its rlimits and its nice value and move it into the slot's
   cgroups, then release it: the program and all it starts inherit all of them, with no
   race and no extra exec.
3. stdout/stderr are read with a cap while tree CPU time and the wall clock are watched.
   The kernel holds the tree to ``Limits.cpus`` cores (the cgroup's CPU quota), and this
   thread watches at real-time priority (:mod:`..priority`), so busy trees cannot delay it;
   the counter is read every 50 ms, and more often as the tree nears ``Limits.cpu_s``, so
   the run stops within a few ms of CPU past it.
   pid 1 exits only after the kernel has killed the rest of its pid namespace, so once it
   is gone nothing of the run survives; killing it is how a run is stopped early.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

from .. import identity
from .. import limits as rl
from ..base import ExecResult, Isolation, Limits
from ..capture import CappedBuffer, PumpResult, classify, pump, signal_name
from ..files import parent_dirs
from ..priority import realtime_watcher
from ..starvation import STARVE_FACTOR, STARVED, stretched_deadline
from . import cgroups
from .host import SANDBOX_PATH, SCRATCH
from .slots import Slot

_SETUP_TIMEOUT_S = 10.0
_EXIT_GRACE_S = 5.0
_ZOMBIE_SLACK = 32
# The tree's CPU counter is read every _CHECK_MAX_S, and, as the tree nears its limit, after
# half the time it could take to reach it on every core (never more often than _CHECK_MIN_S).
_CHECK_MIN_S = 0.005
_CHECK_MAX_S = 0.05


class SetupFailed(Exception):
    """bwrap could not build the sandbox (the program never started)."""


class BwrapRun:
    def __init__(self, static_args: list[str], slot: Slot, limits: Limits, start: float) -> None:
        self.static_args = static_args
        self.slot = slot
        self.limits = limits
        self.start = start
        self.deadline = start + limits.wall_s
        self.tasks = rl.task_count(limits) + 1  # + the sandbox's pid 1 (bwrap's reaper)
        self.group = slot.cgroup
        memory_by_cgroup = bool(self.group and self.group.memory)
        pids_by_cgroup = bool(self.group and self.group.pids)
        # RLIMIT_NPROC counts every process of the host uid, zombies included: only a
        # fallback (without a pids cgroup) and only under the slot's own uid. The slack
        # covers pid 1s of earlier runs that the host's init has not reaped yet.
        nproc = None
        if slot.lease is not None and not pids_by_cgroup:
            nproc = rl.task_count(limits) + 2 + _ZOMBIE_SLACK
        self.task_cap = pids_by_cgroup or nproc is not None
        self.rlimits = rl.rlimits_for(limits, memory=not memory_by_cgroup, nproc=nproc)
        self.fds: list[int] = []
        self.argv: list[str] = []
        self.init_pid = 0
        self.killed_bwrap = False  # we killed bwrap itself (pid 1 would not go)
        self.nice_error = ""  # why the tree could not be niced, if it could not
        self.watcher_error: str | None = None  # why the watcher is not real-time, if not
        self._cpu_used = 0.0  # the tree's CPU seconds at the last check
        # Within one quota period the tree may run on every core we have (the quota bounds
        # its average over a period): the fastest it can burn CPU time, for the check interval.
        self._cpu_rate = 1.0

    def execute(
        self, argv: Sequence[str], files: dict[str, bytes], stdin: bytes, env: Mapping[str, str] | None
    ) -> ExecResult:
        self.argv = list(argv)
        if self.group is not None:
            self.group.prepare(self.limits, self.tasks)
        try:
            return self._execute(files, stdin, env)
        finally:
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self.group is not None:
                self.group.kill_all()  # normally empty: only after a failure of ours
                self.group.finish()

    # -- phases -----------------------------------------------------------------------------
    def _execute(self, files: dict[str, bytes], stdin: bytes, env: Mapping[str, str] | None) -> ExecResult:
        info_r, info_w = self._pipe()
        block_r, block_w = self._pipe()
        args, pass_fds = self._args(files, env, info_w, block_r)
        stdin_fd = self._memfd("stdin", stdin) if stdin else subprocess.DEVNULL
        with self._as_sandbox_user():
            proc = subprocess.Popen(
                args,
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                cwd="/",
                env={},
            )
            try:
                os.close(info_w)
                self.fds.remove(info_w)
                init_pid = _read_child_pid(info_r)
                if init_pid is not None:
                    # Still as the sandbox uid: prlimit() on another uid's process needs
                    # CAP_SYS_RESOURCE, which root lacks in many containers.
                    rl.apply_to_pid(init_pid, self.rlimits)
                    self._nice(init_pid)
            except BaseException:
                with proc:  # closes our pipe ends, waits
                    proc.kill()
                raise
        if init_pid is None:
            with proc:
                proc.wait()
                raise SetupFailed(proc.stderr.read(65536).decode("utf-8", "replace").strip())  # type: ignore[union-attr]
        init_fd = -1
        with proc:
            try:
                self.init_pid = init_pid
                init_fd = os.pidfd_open(init_pid)
                self.fds.append(init_fd)
                if self.group is not None:
                    self.group.attach(init_pid)
                os.write(block_w, b"g")  # pid 1 goes on: forks and execs the program
                return self._supervise(proc, init_fd, block_r)
            except BaseException:
                # Kill before anything closes the block fd: EOF there would release pid 1.
                proc.kill()  # --die-with-parent takes pid 1 along
                if init_fd >= 0:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(init_fd, signal.SIGKILL)
                raise
            finally:
                # If bwrap exited before its pid 1 did, pid 1 was re-parented: to us when we
                # are pid 1 or a subreaper (containers), and then only we can reap it.
                if init_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.waitid(os.P_PIDFD, init_fd, os.WEXITED | os.WNOHANG)

    def _supervise(self, proc: subprocess.Popen, init_fd: int, block_r: int) -> ExecResult:
        cap = rl.output_cap(self.limits)
        buffers = {"stdout": CappedBuffer(cap), "stderr": CappedBuffer(cap)}
        fds = {"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno()}  # type: ignore[union-attr]
        check = self._cpu_check if self.group is not None and self.group.cpu_accounting else None
        self._cpu_rate = float(len(os.sched_getaffinity(0)))
        # Watch pid 1, not bwrap: bwrap may exit as soon as it knows the program's status.
        with realtime_watcher() as self.watcher_error:
            while True:
                outcome = pump(
                    buffers,
                    fds,
                    deadline=self.deadline,
                    exit_fd=init_fd,
                    check=check,
                    check_every=self._cpu_check_interval,
                )
                if outcome.reason != "time_limit":
                    break
                # The wall clock ran out: the program's, unless neighbours kept it from a CPU.
                later = stretched_deadline(self.start, self.limits.wall_s, time.monotonic(), self.init_pid)
                if not isinstance(later, float):
                    outcome = PumpResult(STARVED) if later == STARVED else outcome
                    break
                self.deadline = later
            killed_for = outcome.reason if outcome.reason not in ("exited", "eof") else None
            if killed_for:
                if self.group is not None:
                    self.group.signal_all()  # every process at once, not only pid 1
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(init_fd, signal.SIGKILL)
        if not _wait_readable(init_fd, _EXIT_GRACE_S):
            proc.kill()  # --die-with-parent then kills pid 1
            self.killed_bwrap = True
        # Everything in the sandbox is gone; what is left in the pipes is the tail.
        tail = pump(buffers, fds, deadline=time.monotonic() + 1.0)
        if killed_for is None and tail.reason == "output_limit":
            killed_for, outcome = "output_limit", tail
        tree_cpu = _tree_cpu_of_exited(init_fd, self.init_pid)
        proc.wait()
        if _unread(block_r):  # pid 1 died before reaching the block point
            raise SetupFailed(buffers["stderr"].text().strip())
        return self._result(proc.returncode, tree_cpu, killed_for, buffers, outcome.stream)

    def _result(
        self,
        exit_code: int,
        tree_cpu: float | None,
        killed_for: str | None,
        buffers: Mapping[str, CappedBuffer],
        overflow_stream: str | None,
    ) -> ExecResult:
        wall = time.monotonic() - self.start
        stats = self.group.stats() if self.group is not None else cgroups.CgroupStats()
        leftovers = self.group.kill_all() if self.group is not None else 0
        # bwrap reports a program killed by signal N as exit code 128+N.
        signum = exit_code - 128 if 128 < exit_code < 128 + signal.NSIG else None
        # Without cgroups: pid 1's own and its reaped children's CPU (the whole tree, in
        # clock ticks). No peak memory then: bwrap's rusage covers bwrap, not the program.
        cpu = stats.cpu_s if stats.cpu_s is not None else (tree_cpu or 0.0)
        peak = stats.peak_memory_mb
        status, detail = classify(
            limits=self.limits,
            exit_code=exit_code,
            signum=signum,
            killed_for=killed_for,
            oom_killed=stats.oom_killed,
            cpu_s=cpu,
            stderr=buffers["stderr"].getvalue(),
            overflow_stream=overflow_stream,
        )
        rerun = killed_for == STARVED and status not in ("memory_limit", "time_limit")
        if rerun:
            status = "sandbox_error"
            detail = (
                f"starved of CPU by other programs past {STARVE_FACTOR:g} times "
                f"the {self.limits.wall_s:g}s wall clock"
            )
        from_outside = (exit_code < 0 and not self.killed_bwrap) or signum == signal.SIGKILL
        if status == "runtime_error" and killed_for is None and from_outside:
            # bwrap runs outside the sandbox, and the kernel drops the SIGKILL that a process
            # inside sends to the init of its pid namespace (pid 1 ignores every other signal
            # it has no handler for): neither can be killed from inside. We did not do it, nor
            # did the tree's OOM killer or a CPU limit; the host's OOM killer or a process
            # outside did. That says nothing about the program: run it again.
            status, rerun = "sandbox_error", True
            who = "bwrap" if exit_code < 0 else "the sandbox's pid 1"
            detail = f"{who} was killed from outside the sandbox ({signal_name(abs(exit_code) % 128)})"
        notes = [detail] if detail else []
        if stats.forks_refused:
            notes.append(f"{stats.forks_refused} fork(s) refused at the task cap")
        if leftovers:
            notes.append(f"killed {leftovers} leftover task(s)")
        return ExecResult(
            status=status,
            exit_code=None if killed_for else exit_code,
            stdout=buffers["stdout"].text(),
            stderr=buffers["stderr"].text(),
            cpu_s=cpu,
            wall_s=wall,
            peak_memory_mb=peak,
            isolation=self.isolation(),
            detail="; ".join(notes),
            extra={
                "stdout_bytes": buffers["stdout"].total,
                "stderr_bytes": buffers["stderr"].total,
                "forks_refused": stats.forks_refused,
                "python_flags": "-S" if self.argv[1:2] == ["-S"] else "",
            },
            rerun=rerun,
        )

    # -- pieces -----------------------------------------------------------------------------
    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.fds += [r, w]
        return r, w

    def _memfd(self, name: str, data: bytes) -> int:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        self.fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _args(
        self, files: dict[str, bytes], env: Mapping[str, str] | None, info_w: int, block_r: int
    ) -> tuple[list[str], tuple[int, ...]]:
        disk = str(rl.disk_bytes(self.limits))
        args = [*self.static_args, "--size", disk, "--tmpfs", SCRATCH, "--size", disk, "--tmpfs", "/tmp"]
        pass_fds = [info_w, block_r]
        for directory in parent_dirs(list(files)):
            args += ["--dir", f"{SCRATCH}/{directory}"]
        for path, content in files.items():  # bwrap copies each memfd into the tmpfs
            fd = self._memfd("file", content)
            pass_fds.append(fd)
            args += ["--file", str(fd), f"{SCRATCH}/{path}"]
        full_env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "HOME": SCRATCH, "TMPDIR": "/tmp"}
        full_env.update(env or {})
        for key, value in full_env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(f"invalid environment variable {key!r}")
            args += ["--setenv", key, value]
        args += ["--remount-ro", "/", "--chdir", SCRATCH]
        args += ["--info-fd", str(info_w), "--block-fd", str(block_r), "--", *self.argv]
        return args, tuple(pass_fds)

    @contextlib.contextmanager
    def _as_sandbox_user(self):
        """This thread enters the slot's network namespace and uid for the spawn."""
        with contextlib.ExitStack() as stack:
            if self.slot.netns is not None:
                stack.enter_context(identity.thread_netns(self.slot.netns))
            if self.slot.lease is not None:
                stack.enter_context(identity.thread_credentials(self.slot.lease.uid, self.slot.lease.gid))
            yield

    def _nice(self, pid: int) -> None:
        """Lower the (stopped) pid 1's priority; every task of the tree inherits it. Also
        first in line for the host's OOM killer (as the docker backend's programs are): a
        machine out of memory kills a sandbox, not the trainer; that run is then re-run."""
        with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as fh:
            fh.write("1000")
        try:
            os.setpriority(os.PRIO_PROCESS, pid, rl.SANDBOX_NICE)
            os.sched_setscheduler(pid, rl.SANDBOX_POLICY, os.sched_param(0))
        except OSError as exc:
            self.nice_error = exc.strerror or str(exc)

    def _cpu_check(self) -> str | None:
        used = self.group.cpu_s() if self.group is not None else None
        if used is None:
            return None
        self._cpu_used = used
        return "cpu_limit" if used > self.limits.cpu_s else None

    def _cpu_check_interval(self) -> float:
        # The earliest the tree can pass its limit, on every core at once: check by half of that.
        soonest = (self.limits.cpu_s - self._cpu_used) / self._cpu_rate
        return min(_CHECK_MAX_S, max(_CHECK_MIN_S, soonest / 2))

    def isolation(self) -> Isolation:
        lim = self.limits
        disk = f"{rl.disk_bytes(lim) / rl.MIB:g}"
        net = "per-slot empty netns, loopback only" if self.slot.netns is not None else "new netns"
        enforced = [
            "user namespace (nested user namespaces disabled)",
            "pid namespace (tree killed with its pid 1)",
            "mount namespace: read-only root, only /usr from the host; no /etc, home or project tree",
            "minimal read-only /dev (null, zero, full, random, urandom)",
            "ipc, uts and cgroup namespaces",
            f"no network ({net})",
            f"scratch tmpfs {disk} MiB (cwd {SCRATCH})",
            f"private /tmp tmpfs {disk} MiB",
            "clean environment",
        ]
        missing = []
        if self.slot.lease is not None:
            enforced.append(f"uid {self.slot.lease.uid}")
        else:
            missing.append(f"separate uid (not root: runs as uid {os.getuid()} in a user namespace)")
        if self.group is not None:
            enforced += self.group.describe(lim, self.tasks)
            missing += self.group.missing()
        else:
            missing.append("cgroups (none writable here): memory by RLIMIT_AS per process")
            missing.append("cgroup cpu quota (no writable cgroups here)")
        if not (self.group and self.group.cpu_accounting):
            missing.append("tree CPU total (RLIMIT_CPU per process only)")
        elif self.watcher_error:
            missing.append(f"real-time CPU watcher ({self.watcher_error}): may stop the tree late under load")
        else:
            enforced.append("tree CPU total read by a real-time (SCHED_FIFO) watcher")
        if self.nice_error:
            missing.append(f"nice {rl.SANDBOX_NICE} and SCHED_IDLE ({self.nice_error})")
        else:
            enforced.append(
                f"nice {rl.SANDBOX_NICE} and SCHED_IDLE for the whole tree (inherited; cannot be undone)"
            )
        if not self.task_cap:
            missing.append(
                "task cap (no pids cgroup, and RLIMIT_NPROC would count all of our uid's processes)"
            )
        enforced += rl.describe(self.rlimits)
        enforced += [f"output cap {rl.output_cap(lim)} bytes per stream", f"wall clock {lim.wall_s:g}s"]
        return Isolation("bwrap", tuple(enforced), tuple(missing))


def _read_child_pid(info_r: int) -> int | None:
    """bwrap's ``{"child-pid": N, ...}``; ``None`` if it died before creating pid 1."""
    data = b""
    limit = time.monotonic() + _SETUP_TIMEOUT_S
    while _wait_readable(info_r, limit - time.monotonic()):
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    raise TimeoutError("bwrap did not report its sandbox pid")


def _wait_readable(fd: int, timeout_s: float) -> bool:
    # poll, not select: select() cannot take fds above 1023, which big processes reach.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout_s) * 1000))


def _tree_cpu_of_exited(pidfd: int, pid: int) -> float | None:
    """CPU seconds of an exited (zombie) process plus its reaped children, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        # Still the same process? (A zombie can be signalled; a reaped pid cannot.)
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _unread(fd: int) -> bool:
    pending = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return pending[0] > 0
