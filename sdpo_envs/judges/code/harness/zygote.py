"""Z, the zygote: forks one worker per request of P, reaps it and reports how it ended."""

import os
import resource
from _signal import SIGKILL

from .ipc import recv_msg, send_msg
from .privileges import PR_SET_CHILD_SUBREAPER, prctl
from .procs import exit_info, quietly, reap_orphans
from .worker import run_worker

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from _socket import socket
    from typing import NoReturn

    from .worker import State


def zygote_main(sock: "socket", state: "State") -> "NoReturn":
    """Z's loop: fork a worker per request, reap it, report how it ended. Never returns."""
    try:
        prctl(state["libc"], PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # stdin (the tests) and stdout (the report) are P's alone
        os.dup2(devnull, 1)
        os.close(devnull)
        # ... and so are P's ends of the first worker's pipes (held here, its stdin never ends)
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, max(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        while True:
            msg, fds = recv_msg(sock)
            if msg is None or msg.get("op") == "quit":
                break
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                send_msg(sock, {"fork_error": str(exc)})
                continue
            if pid == 0:
                sock.close()
                run_worker(fds, msg, state)
            quietly(os.setpgid, pid, pid)  # as the worker does: no window where killpg misses it
            for fd in fds:
                os.close(fd)
            send_msg(sock, {"pid": pid})
            _, status, usage = os.wait4(pid, 0)
            quietly(os.killpg, pid, SIGKILL)
            reap_orphans()
            send_msg(sock, exit_info(status, usage))
        reap_orphans()
        os._exit(0)
    except BaseException:
        try:
            import traceback  # only on a failure: its imports would slow every start

            send_msg(sock, {"harness_error": traceback.format_exc(limit=8)[-4000:]})
        except BaseException:
            pass
        os._exit(70)
