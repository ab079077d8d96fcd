"""Output capture with a byte cap, and the status rules every backend shares.

Backend-neutral on purpose: ``CappedBuffer`` and ``classify`` work for any byte source
(pipes here, a Docker attach stream elsewhere); ``pump`` is the pipe reader used by the
``bwrap`` and ``process`` backends.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .base import ExecStatus, Limits

_CHUNK = 1 << 16
# A Python traceback ends with the exception line; only its last few KiB are searched so a
# program cannot make us scan megabytes of stderr.
_MEMORY_ERROR = re.compile(rb"^MemoryError\b", re.MULTILINE)
_TAIL_BYTES = 4096


class CappedBuffer:
    """Bytes kept up to ``cap``; anything beyond is counted and dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._parts: list[bytes] = []
        self.kept = 0
        self.total = 0

    def feed(self, data: bytes) -> bool:
        """Add ``data``; ``False`` once the stream has gone over the cap."""
        self.total += len(data)
        room = self.cap - self.kept
        if room > 0:
            piece = data[:room]
            self._parts.append(piece)
            self.kept += len(piece)
        return self.total <= self.cap

    @property
    def overflowed(self) -> bool:
        return self.total > self.cap

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def text(self) -> str:
        return decode_output(self.getvalue())


def decode_output(data: bytes) -> str:
    """Program output as text; invalid UTF-8 never raises."""
    return data.decode("utf-8", errors="replace")


@dataclass
class PumpResult:
    """Why ``pump`` returned: ``eof`` (all streams closed), ``exited`` (``exit_fd`` fired),
    ``output_limit``, ``time_limit`` (wall deadline), or whatever ``check`` returned."""

    reason: str
    stream: str | None = None  # the stream that went over the cap, for ``output_limit``


def pump(
    buffers: Mapping[str, CappedBuffer],
    fds: dict[str, int],
    *,
    deadline: float,
    exit_fd: int | None = None,
    check: Callable[[], str | None] | None = None,
    check_every: float | Callable[[], float] = 0.05,
) -> PumpResult:
    """Read the pipes in ``fds`` (name -> fd) into ``buffers`` until something happens.

    Closed streams are removed from ``fds`` so a later call drains only what is left.
    ``exit_fd`` is a pidfd (readable once the process exits); ``check`` is polled every
    ``check_every`` seconds (e.g. the cgroup's CPU time) and stops the pump with its reason.
    ``check_every`` may be a function, asked for the next interval after every check (so
    the CPU counter is read more often as the tree nears its limit).
    """
    interval = check_every if callable(check_every) else (lambda: check_every)
    poller = select.poll()
    by_fd: dict[int, str] = {}
    for name, fd in fds.items():
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
        by_fd[fd] = name
    if exit_fd is not None:
        poller.register(exit_fd, select.POLLIN)
    next_check = time.monotonic() + interval()
    while by_fd or exit_fd is not None:
        now = time.monotonic()
        if now >= deadline:
            return PumpResult("time_limit")
        wake = deadline if check is None else min(deadline, next_check)
        try:
            events = poller.poll(max(0.0, wake - now) * 1000)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            continue
        for fd, _mask in events:
            if fd == exit_fd:
                return PumpResult("exited")
            name = by_fd[fd]
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:  # EIO and friends end the stream like EOF does
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                data = b""
            if not data:
                poller.unregister(fd)
                del by_fd[fd]
                del fds[name]
                continue
            if not buffers[name].feed(data):
                return PumpResult("output_limit", stream=name)
        if check is not None and time.monotonic() >= next_check:
            reason = check()
            if reason:
                return PumpResult(reason)
            next_check = time.monotonic() + interval()
    return PumpResult("eof")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify(
    *,
    limits: Limits,
    exit_code: int | None,
    signum: int | None = None,
    killed_for: str | None = None,
    oom_killed: bool = False,
    cpu_s: float | None = None,
    stderr: bytes = b"",
    overflow_stream: str | None = None,
) -> tuple[ExecStatus, str]:
    """The status of a finished run and why, from what the supervisor observed.

    ``killed_for`` is the supervisor's own reason for killing the run (``output_limit``,
    ``time_limit`` for the wall clock, ``cpu_limit`` for the tree CPU total). ``signum`` is
    the signal that ended the program, when known. Only failure statuses can be reached
    from the program's own output (a ``MemoryError`` line), never ``ok`` or
    ``sandbox_error``, so printing text cannot turn a failure into a pass or into a judge
    failure.
    """
    if killed_for == "output_limit":
        stream = overflow_stream or "output"
        return "output_limit", f"{stream} exceeded {limits.output_bytes} bytes; the run was killed"
    if oom_killed:
        return "memory_limit", f"killed by the out-of-memory killer at the {limits.memory_mb} MiB cap"
    if killed_for == "time_limit":
        return "time_limit", f"wall-clock limit of {limits.wall_s:g}s reached; the run was killed"
    if killed_for == "cpu_limit" or (cpu_s is not None and cpu_s > limits.cpu_s):
        return "time_limit", f"CPU time {cpu_s or 0:.2f}s exceeded the {limits.cpu_s:g}s limit"
    if signum == signal.SIGXCPU:
        return "time_limit", "killed by SIGXCPU (per-process CPU limit)"
    if exit_code == 0 and signum is None:
        return "ok", ""
    if _MEMORY_ERROR.search(stderr[-_TAIL_BYTES:]):
        return "memory_limit", "the program raised MemoryError"
    if signum is not None:
        return "runtime_error", f"killed by {signal_name(signum)}"
    return "runtime_error", f"exit code {exit_code}"
