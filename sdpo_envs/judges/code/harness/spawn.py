"""How P gets a test's worker: forked directly (the first test's, before P reads the tests)
or from Z; and P's handles on a worker and on Z."""

import _socket
import os
from _signal import SIGKILL

from .ipc import recv_msg, send_msg
from .procs import quietly
from .worker import run_worker
from .zygote import zygote_main


class ZygoteGone(Exception):
    """Z died, stopped answering or could not fork: the remaining tests cannot run."""


class Zygote:
    def __init__(self, sock, pid):
        self.sock, self.pid = sock, pid
        self.alive = True

    def recv(self, timeout=None):
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

    def __init__(self, pid, fds, chan, pidfd=None, zygote=None):
        self.pid, self.fds, self.chan, self.pidfd, self.zygote = pid, fds, chan, pidfd, zygote

    def close(self):  # idempotent: every fd is closed exactly once
        while self.fds:
            quietly(os.close, self.fds.popitem()[1])
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        if self.pidfd is not None:
            quietly(os.close, self.pidfd)
            self.pidfd = None


def _worker_pipes():
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    chan, worker_chan = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return {"in": in_w, "out": out_r, "err": err_r}, chan, [in_r, out_w, err_w, worker_chan]


def fork_worker(state, request):
    """Fork W directly from P; only before P has read the tests. ``None`` if not possible."""
    if not hasattr(os, "pidfd_open"):
        return None
    mine, chan, theirs = _worker_pipes()
    try:
        pid = os.fork()
    except OSError:
        pid = None
    if pid == 0:
        run_worker([*theirs[:3], theirs[3].fileno()], request, state)
    if pid is not None:
        quietly(os.setpgid, pid, pid)  # as the worker does: no window where killpg misses it
    for fd in theirs[:3]:
        os.close(fd)
    theirs[3].close()
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


def worker_from_zygote(zyg, request):
    mine, chan, theirs = _worker_pipes()
    try:
        send_msg(zyg.sock, request, [*theirs[:3], theirs[3].fileno()])
    except OSError:
        zyg.alive = False
    finally:
        for fd in theirs[:3]:
            os.close(fd)
        theirs[3].close()
    worker = Worker(None, mine, chan, zygote=zyg)
    msg = zyg.recv(timeout=max(5.0, request["limits"]["wall_s"])) if zyg.alive else None
    if not isinstance(msg, dict) or "pid" not in msg:
        worker.close()
        zyg.alive = False
        raise ZygoteGone(str((msg or {}).get("fork_error", "the judge's worker process stopped responding")))
    worker.pid = msg["pid"]
    return worker


def start_zygote(state):
    parent_sock, zygote_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        zygote_main(zygote_sock, state)
    zygote_sock.close()
    return Zygote(parent_sock, pid)
