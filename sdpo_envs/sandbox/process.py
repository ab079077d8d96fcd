"""The ``process`` backend: a plain child process under rlimits. NOT a sandbox.

The program can read and write anything its uid may, use the network and see the host's
processes. Use it for trusted code or where nothing better runs; ``get_backend`` refuses
it unless ``allow_unsafe=True``. What it does enforce: rlimits (CPU per process, address
space, file size, no core dumps, and the task count when it can run the program under a
uid of its own, i.e. as root), the output cap and the wall clock, a scratch directory that
is removed afterwards, and, under its own uid, killing every process of that uid at the
end (so even daemons that left the session die).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence

from . import identity
from . import limits as rl
from .base import ExecResult, Isolation, Limits, SandboxBackend
from .capture import CappedBuffer, classify, pump
from .files import as_bytes, normalize_files

logger = logging.getLogger(__name__)

UNSAFE_WARNING = (
    "sandbox backend 'process' does NOT isolate code: the program can read and write the "
    "host's files, use the network and see other processes; only rlimits, an output cap and "
    "a wall clock are enforced. Never use it for untrusted code."
)


class ProcessBackend(SandboxBackend):
    name = "process"
    trusted_isolation = False

    def __init__(self) -> None:
        warnings.warn(UNSAFE_WARNING, RuntimeWarning, stacklevel=2)
        logger.warning(UNSAFE_WARNING)
        self._python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        self._own_uid = identity.can_switch_thread_credentials()
        self._used = False

    @classmethod
    def probe(cls) -> str | None:
        if not sys.platform.startswith("linux"):
            return "the process backend needs Linux (pidfds, prlimit)"
        return None

    @property
    def python(self) -> str:
        return self._python

    def run(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, str | bytes] | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        limits = limits or Limits()
        start = time.monotonic()
        if not self._used:  # once per instance: loud, but not once per test case
            self._used = True
            logger.warning("running code WITHOUT isolation: %s", UNSAFE_WARNING)
        try:
            checked = normalize_files(files)
        except ValueError as exc:
            return _error(limits, start, str(exc))
        scratch = tempfile.mkdtemp(prefix="sdpo-process-")
        lease = None
        try:
            lease = identity.lease_uid() if self._own_uid else None
            _populate(scratch, checked, lease)
            return self._run(argv, scratch, as_bytes(stdin), limits, env, lease, start)
        except Exception as exc:
            logger.exception("process backend failed")
            return _error(limits, start, f"sandbox failure: {type(exc).__name__}: {exc}")
        finally:
            _rmtree(scratch)
            if lease is not None:
                lease.release(sweep=True)

    def _run(
        self,
        argv: Sequence[str],
        scratch: str,
        stdin: bytes,
        limits: Limits,
        env: Mapping[str, str] | None,
        lease: identity.UidLease | None,
        start: float,
    ) -> ExecResult:
        # RLIMIT_NPROC counts every process of the uid: only meaningful under our own uid.
        nproc = rl.task_count(limits) + 1 if lease else None
        rlimits = rl.rlimits_for(limits, memory=True, nproc=nproc)
        prefix = rl.prlimit_command(rlimits)
        full_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": scratch,
            "TMPDIR": scratch,
        }
        full_env.update(env or {})
        stdin_fd = _memfd(stdin) if stdin else subprocess.DEVNULL
        try:
            with contextlib.ExitStack() as stack:
                if lease is not None:
                    stack.enter_context(identity.thread_credentials(lease.uid, lease.gid))
                proc = subprocess.Popen(
                    [*(prefix or []), *argv],
                    stdin=stdin_fd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=scratch,
                    env=full_env,
                    start_new_session=True,
                    # Only without util-linux prlimit: preexec_fn is not fork-safe with threads.
                    preexec_fn=None if prefix else (lambda: rl.apply_to_self(rlimits)),
                )
        finally:
            if stdin_fd != subprocess.DEVNULL:
                os.close(stdin_fd)
        with proc:
            return self._supervise(proc, limits, rlimits, lease, start)

    def _supervise(
        self,
        proc: subprocess.Popen,
        limits: Limits,
        rlimits: rl.Rlimits,
        lease: identity.UidLease | None,
        start: float,
    ) -> ExecResult:
        cap = rl.output_cap(limits)
        buffers = {"stdout": CappedBuffer(cap), "stderr": CappedBuffer(cap)}
        fds = {"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno()}  # type: ignore[union-attr]
        exit_fd = os.pidfd_open(proc.pid)
        try:
            outcome = pump(buffers, fds, deadline=start + limits.wall_s, exit_fd=exit_fd)
        finally:
            os.close(exit_fd)
        killed_for = outcome.reason if outcome.reason not in ("exited", "eof") else None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the program's session (start_new_session)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if lease is not None:
            # Daemons that left the session: one kill(-1) as the uid reaches them all, forks
            # in flight included (a sweep of /proc could be outrun by a fork bomb).
            identity.sweep_uid(lease.uid)
        tail = pump(buffers, fds, deadline=time.monotonic() + 0.5)
        if killed_for is None and tail.reason == "output_limit":
            killed_for, outcome = "output_limit", tail
        code = proc.returncode
        signum = -code if code < 0 else None
        cpu = usage.ru_utime + usage.ru_stime
        stat, detail = classify(
            limits=limits,
            exit_code=code,
            signum=signum,
            killed_for=killed_for,
            cpu_s=cpu,
            stderr=buffers["stderr"].getvalue(),
            overflow_stream=outcome.stream,
        )
        return ExecResult(
            status=stat,
            exit_code=None if killed_for else code,
            stdout=buffers["stdout"].text(),
            stderr=buffers["stderr"].text(),
            cpu_s=cpu,
            wall_s=time.monotonic() - start,
            peak_memory_mb=usage.ru_maxrss / 1024,
            isolation=_isolation(limits, rlimits, lease),
            detail=detail,
        )


def _populate(scratch: str, files: Mapping[str, bytes], lease: identity.UidLease | None) -> None:
    for rel, content in files.items():
        path = os.path.join(scratch, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
    if lease is not None:  # the program's uid must own its scratch dir
        for root, dirs, names in os.walk(scratch):
            os.chown(root, lease.uid, lease.gid)
            for name in dirs + names:
                os.chown(os.path.join(root, name), lease.uid, lease.gid, follow_symlinks=False)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _rmtree(path: str) -> None:
    def fix(func, target, _exc):  # the program may have removed our permissions
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            func(target)

    shutil.rmtree(path, onerror=fix)


def _isolation(limits: Limits, rlimits: rl.Rlimits, lease: identity.UidLease | None) -> Isolation:
    enforced = [*rl.describe(rlimits), f"output cap {rl.output_cap(limits)} bytes per stream"]
    enforced += [f"wall clock {limits.wall_s:g}s", "scratch temp dir (cwd, removed after the run)"]
    missing = [
        "filesystem isolation (reads and writes whatever the uid may)",
        "network isolation",
        "pid namespace",
        "tree memory cap (RLIMIT_AS per process only)",
        "tree CPU total (RLIMIT_CPU per process only)",
        "scratch size (only RLIMIT_FSIZE per file)",
    ]
    if lease is not None:
        enforced += [f"uid {lease.uid}", "every process of that uid killed at the end"]
    else:
        missing += ["separate uid", "task cap", "killing daemons that left the process group"]
    return Isolation("process", tuple(enforced), tuple(missing))


def _error(limits: Limits, start: float, detail: str) -> ExecResult:
    return ExecResult(
        status="sandbox_error",
        exit_code=None,
        stdout="",
        stderr="",
        cpu_s=0.0,
        wall_s=time.monotonic() - start,
        peak_memory_mb=None,
        isolation=Isolation("process", (), ("the program did not run",)),
        detail=detail,
    )
