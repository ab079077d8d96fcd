"""One test's run as P drives it: feed the worker's stdin, drain its stdout, stderr and
channel, enforce the wall-clock and output limits, learn how it ended."""

import os
import select
import struct
import time
from _signal import SIGKILL

from .ipc import framed
from .procs import STARVE_FACTOR, exit_info, process_state, quietly, reap_orphans, stretched_deadline
from .wire import KEEP_STDERR

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Collection
    from typing import Any

    from .spawn import Worker

_GRACE_S = 5.0  # how long the end of a killed worker may take (more while it is starved)
STARVED = "starved"  # a test's verdict when neighbours kept it from a CPU past its wall clock
_ZYGOTE_LOST = {"exit": None, "signal": SIGKILL, "cpu_s": 0.0, "peak_mb": None}


class Run:
    """One test's worker: its pipes, its deadline, and what it said."""

    def __init__(
        self,
        worker: "Worker",
        limits: "dict[str, Any]",
        stdin_data: bytes = b"",
        keep: "Collection[int]" = (),
    ) -> None:
        self.worker, self.zyg, self.pid = worker, worker.zygote, worker.pid
        self.keep = set(keep)  # P's children that are not this worker's leftovers (Z)
        self.limits = limits
        self.start = time.monotonic()
        self.deadline = self.start + limits["wall_s"]
        self.kill_reason: str | None = None
        self.lost = False  # Z vanished while this worker ran
        self.starved = False  # ... or was kept from a CPU past every allowance
        self.exit: dict[str, Any] | None = None  # how it ended (exit_info), once known
        self.out, self.err = bytearray(), bytearray()
        self.frames: list[bytes] = []
        self.chan_buf = bytearray()
        self.to_stdin = memoryview(stdin_data)
        self.fds, self.chan = worker.fds, worker.chan  # shared with the worker, closed once
        for fd in self.fds.values():
            os.set_blocking(fd, False)
        if self.chan is not None:
            self.chan.setblocking(False)
        if not self.to_stdin:
            self._close("in")
        self.to_chan = bytearray(framed(b"go"))

    def _close(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close_all(self) -> None:
        self.worker.close()
        self.chan = None

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.pid is not None and self.exit is None:
            quietly(os.kill, self.pid, SIGKILL)  # the group alone could miss a worker just forked
            quietly(os.killpg, self.pid, SIGKILL)

    def send(self, payload: bytes) -> None:
        """Queue a frame for the worker's channel (sent as it can take it, while pumping)."""
        self.to_chan += framed(payload)

    def _grab_frames(self) -> None:
        while len(self.chan_buf) >= 4:
            (size,) = struct.unpack(">I", self.chan_buf[:4])
            if size > self.limits["output_bytes"] + 4096:
                self.kill("output")
                self.chan_buf.clear()
                return
            if len(self.chan_buf) < 4 + size:
                return
            self.frames.append(bytes(self.chan_buf[4 : 4 + size]))
            del self.chan_buf[: 4 + size]

    def pump(self, want_frame: bool) -> "bytes | None":
        """Move data until a frame arrived (``want_frame``) or the worker is gone; enforce limits."""
        grace: float | None = None
        while True:
            if want_frame and self.frames:
                return self.frames.pop(0)
            # The exit is known only once the worker's group and orphans are dead, so every
            # pipe reaches EOF soon after: drain them all, a last error message included.
            if self.exit is not None and not self.fds.keys() & {"out", "err"} and self.chan is None:
                return None
            now = time.monotonic()
            if self.kill_reason is None and now >= self.deadline:
                self._at_deadline(now)
            if self.kill_reason is not None:
                grace = grace or now + _GRACE_S
                if now >= grace and self._dying_slowly(now):
                    grace = now + _GRACE_S  # queued for a CPU to die (or Z to report): not lost
                elif now >= grace:  # the exit never came: Z is gone or stopped
                    self._zygote_lost()
                    self.close_all()
                    continue
            rlist: list[Any] = [self.fds[n] for n in ("out", "err") if n in self.fds]
            if self.chan is not None:
                rlist.append(self.chan)
            if self.exit is None:
                rlist.append(self.zyg.sock if self.zyg is not None else self.worker.pidfd)
            wlist: list[Any] = [self.fds["in"]] if "in" in self.fds else []
            if self.to_chan and self.chan is not None:
                wlist.append(self.chan)
            timeout = (grace or self.deadline) - now
            readable, writable, _ = select.select(rlist, wlist, [], max(0.0, timeout))
            for ready in readable:
                self._on_readable(ready)
            for ready in writable:
                self._on_writable(ready)

    def _at_deadline(self, now: float) -> None:
        """The wall clock ran out: the program's, unless neighbours kept it from a CPU."""
        later = None
        if self.pid is not None and self.exit is None:
            later = stretched_deadline(self.start, self.limits["wall_s"], now, self.pid)
        if isinstance(later, float):
            self.deadline = later
        else:
            self.kill(STARVED if later == "starved" else "wall")

    def _dying_slowly(self, now: float) -> bool:
        """Whether the end is late only because neighbours hold the CPUs: the killed worker,
        or Z that is to report its end, is still there and runnable (neither stopped nor
        asleep), within ``STARVE_FACTOR`` times the limit. Past that the test is starved."""
        watched = [pid for pid in (self.pid, self.zyg.pid if self.zyg is not None else None) if pid]
        if not any(process_state(pid) in ("R", "D") for pid in watched):
            return False
        if now - self.start < STARVE_FACTOR * self.limits["wall_s"] + _GRACE_S:
            return True
        self.starved = True
        return False

    def _zygote_lost(self) -> None:
        if self.zyg is not None:
            self.zyg.alive = False
        self.lost = True
        self.kill(self.kill_reason or "zygote")
        self.exit = self.exit or dict(_ZYGOTE_LOST)

    def _reaped(self) -> None:
        """P's own child ended: collect it, then what it left behind (P is a subreaper)."""
        assert self.pid is not None  # forked by P itself: its pid is known
        _, status, usage = os.wait4(self.pid, 0)
        quietly(os.killpg, self.pid, SIGKILL)
        reap_orphans(self.keep)
        self.exit = exit_info(status, usage)

    def _on_readable(self, ready: "Any") -> None:  # an fd or a socket, as select gave it
        if self.zyg is not None and ready is self.zyg.sock:
            msg = self.zyg.recv(timeout=0)
            if isinstance(msg, dict) and "exit" in msg:
                self.exit = msg
            else:
                self._zygote_lost()
        elif self.zyg is None and ready == self.worker.pidfd:
            self._reaped()
        elif ready is self.chan:
            try:
                data = self.chan.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.chan.close()  # the worker's reference is closed again later: harmless
                self.chan = None
            else:
                self.chan_buf += data
                self._grab_frames()
        else:
            name = "out" if ready == self.fds.get("out") else "err"
            try:
                data = os.read(ready, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self._close(name)
            elif name == "out":
                self.out += data
                if len(self.out) > self.limits["output_bytes"]:
                    self.kill("output")
            elif len(self.err) < KEEP_STDERR:  # stderr is drained in full, only its head kept
                self.err += data

    def _on_writable(self, ready: "Any") -> None:
        if ready is self.chan and self.chan is not None:
            try:
                del self.to_chan[: self.chan.send(self.to_chan)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.to_chan.clear()
        elif ready == self.fds.get("in"):
            try:
                self.to_stdin = self.to_stdin[os.write(ready, self.to_stdin[: 1 << 16]) :]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the program closed its stdin: the rest is not needed
                self.to_stdin = memoryview(b"")
            if not self.to_stdin:
                self._close("in")

    def finish(self) -> None:
        """Kill what is left of the worker and wait until it has been reaped."""
        if self.exit is None:
            self.kill(self.kill_reason or "done")
            self._close("in")
            self.pump(want_frame=False)
        self.close_all()
