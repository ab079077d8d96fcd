"""How P gets a test's worker: forked directly (the first test's, before P reads the tests)
or from Z; and P's handles on a worker and on Z."""

import _socket
import os
from _signal import SIGKILL

from .ipc import recv_msg, send_msg
from .procs import quietly
from .worker import run_worker
from .zygote import zygote_main

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from typing import Any

    from .worker import State


class ZygoteGone(Exception):
    """Z died, stopped answering or could not fork: the remaining tests cannot run."""


class Zygote:
    """Z as P holds it: the socket to it, its pid, whether it still answers."""

    def __init__(self, sock: "_socket.socket", pid: int) -> None:
        self.sock, self.pid = sock, pid
        self.alive = True

    def recv(self, timeout: "float | None" = None) -> "Any":
        """Z's next message; ``None`` (and Z is taken for dead, unless only polled) when none came."""
        if not self.alive:
            return None
        try:
            msg, fds = recv_msg(self.sock, timeout)
        except (OSError, ValueError):
            msg, fds = None, []
        for fd in fds:
            os.close(fd)
        if msg is None and timeout != 0:
            self.alive = False
        if isinstance(msg, dict) and "harness_error" in msg:
            raise RuntimeError("zygote failed:\n" + str(msg["harness_error"]))
        return msg


class Worker:
    """A forked worker as P holds it: its pid, P's ends of its pipes, how its end is learnt
    (a pidfd when P is its parent, otherwise Z's report)."""

    def __init__(
        self,
        pid: "int | None",
        fds: "dict[str, int]",
        chan: "_socket.socket",
        pidfd: "int | None" = None,
        zygote: "Zygote | None" = None,
    ) -> None:
        self.pid, self.fds, self.pidfd, self.zygote = pid, fds, pidfd, zygote
        self.chan: _socket.socket | None = chan

    def close(self) -> None:  # idempotent: every fd is closed exactly once
        while self.fds:
            quietly(os.close, self.fds.popitem()[1])
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        if self.pidfd is not None:
            quietly(os.close, self.pidfd)
            self.pidfd = None


def _worker_pipes() -> "tuple[dict[str, int], _socket.socket, list[int], _socket.socket]":
    """P's ends of a worker's stdin, stdout and stderr pipes and P's end of its channel; the
    worker's ends of the pipes (its fds 0-2 to be) and of the channel."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    chan, worker_chan = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return {"in": in_w, "out": out_r, "err": err_r}, chan, [in_r, out_w, err_w], worker_chan


def _close_theirs(fds: "list[int]", chan: "_socket.socket") -> None:
    """Close the worker's ends in P, once the worker (or Z) holds them."""
    for fd in fds:
        os.close(fd)
    chan.close()


def fork_worker(state: "State", request: "dict[str, Any]") -> "Worker | None":
    """Fork W directly from P; only before P has read the tests. ``None`` if not possible."""
    if not hasattr(os, "pidfd_open"):
        return None
    mine, chan, theirs, their_chan = _worker_pipes()
    pid: int | None
    try:
        pid = os.fork()
    except OSError:
        pid = None
    if pid == 0:
        run_worker([*theirs, their_chan.fileno()], request, state)
    if pid is not None:
        quietly(os.setpgid, pid, pid)  # as the worker does: no window where killpg misses it
    _close_theirs(theirs, their_chan)
    worker = Worker(pid, mine, chan)
    try:
        if pid is None:
            raise OSError("fork failed")
        worker.pidfd = os.pidfd_open(pid)
    except OSError:
        if pid is not None:
            quietly(os.kill, pid, SIGKILL)
            quietly(os.waitpid, pid, 0)
        worker.close()
        return None
    return worker


def worker_from_zygote(zyg: Zygote, request: "dict[str, Any]") -> Worker:
    """A worker forked by Z for ``request``; ``ZygoteGone`` when Z cannot give one."""
    mine, chan, theirs, their_chan = _worker_pipes()
    try:
        send_msg(zyg.sock, request, [*theirs, their_chan.fileno()])
    except OSError:
        zyg.alive = False
    finally:
        _close_theirs(theirs, their_chan)
    worker = Worker(None, mine, chan, zygote=zyg)
    msg = zyg.recv(timeout=max(5.0, request["limits"]["wall_s"])) if zyg.alive else None
    if not isinstance(msg, dict) or "pid" not in msg:
        worker.close()
        zyg.alive = False
        raise ZygoteGone(str((msg or {}).get("fork_error", "the judge's worker process stopped responding")))
    worker.pid = msg["pid"]
    return worker


def start_zygote(state: "State") -> Zygote:
    """Fork Z, which inherits ``state`` as every worker it forks will."""
    parent_sock, zygote_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        zygote_main(zygote_sock, state)
    zygote_sock.close()
    return Zygote(parent_sock, pid)
