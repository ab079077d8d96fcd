"""Worker process of the math-verify checker pool (see ``pool``).

Started as ``python worker.py <parent pid>`` (by path): run as a script, so importing it
does not import ``sdpo_envs`` (or gymnasium) in the worker. The parent imports only the
framing helpers below; ``math_verify`` is imported in ``main`` alone.

Wire format, both directions: 4-byte big-endian length + pickle (the two ends are the same
trusted code). stdin carries requests, the original stdout carries replies; the worker's
fd 1 is then pointed at stderr so a stray ``print`` in a library cannot corrupt the channel.

* parent -> worker: a settings dict, then ``("check", [(answer, gold), ...], timeout_s)``.
* worker -> parent: ``("ready", pid)``, then one reply per checked pair, in order:
  ``("ok", correct, answer_repr, gold_repr)``, ``("timeout",)`` or ``("error", text)``.

Every check runs in the main thread, under a SIGALRM soft timeout (math-verify's own
signal-based timeouts are switched off because they would cancel ours). A check stuck in C
code ignores signals; the parent's hard deadline kills the whole process then.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import sys
from typing import Any, BinaryIO

# The parent (``pool``) imports this module for its framing (HEADER, pack, read_frame) only:
# what the worker alone needs (ctypes, signal, resource, logging, sympy, math_verify) is
# imported in the functions that use it, so the parent never pays for it.

HEADER = struct.Struct(">I")
HOOK_PREFIX = "\x00hook:"  # test-only: "\x00hook:sleep:2", "\x00hook:hang", "\x00hook:crash"
REPR_CHARS = 200


def pack(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def read_frame(stream: BinaryIO) -> Any:
    """Read one message; ``None`` at end of stream (the parent closed the pipe)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


class SoftTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so math-verify's ``except Exception`` cannot eat it."""


def _die_with_parent(parent_pid: int) -> None:
    # A worker hung in C code never reads its stdin again, so EOF cannot stop it when the
    # parent dies: ask the kernel to SIGKILL it instead (Linux only; elsewhere best effort).
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _limit_memory(extra_mb: int | None) -> None:
    """Cap the address space at its size now plus ``extra_mb``: imports are never starved.

    A check that hits the cap raises MemoryError, which math-verify turns into "not equal".
    """
    if not extra_mb:
        return
    try:
        import resource

        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = size + (int(extra_mb) << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):  # not Linux, or not allowed: run without a cap
        pass


def _math_repr(parsed: list[Any]) -> str | None:
    """``str`` of the first SymPy object math-verify extracted, or None if it found none."""
    from sympy import Basic, MatrixBase

    for item in parsed:
        if isinstance(item, (Basic, MatrixBase)):
            try:
                text = str(item)
            except Exception:  # e.g. an integer too long for str(): still a parsed value
                text = f"<{type(item).__name__}>"
            return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 3] + "..."
    return None


def _run_hook(spec: str) -> tuple:
    import signal
    import time

    name, _, arg = spec[len(HOOK_PREFIX) :].partition(":")
    if name == "sleep":  # interruptible: the soft timeout answers it
        time.sleep(float(arg or 3600))
    elif name == "hang":  # like a check stuck in C code: only the parent's kill ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    elif name == "crash":
        os._exit(int(arg or 3))
    return ("ok", False, None, None)


def _warm_up(parse: Any, verify: Any) -> None:
    """One check before ``ready``: math-verify builds its LaTeX grammar and SymPy loads its
    printers lazily (about 0.2 s on an idle core), which would otherwise be charged to the
    first real check's timeout and turn it into a judge error on a busy machine."""
    with contextlib.suppress(Exception):
        verify(
            parse("$\\frac{1}{2}$", parsing_timeout=None),
            parse("$0.5$", parsing_timeout=None),
            timeout_seconds=None,
        )


def main() -> None:
    parent_pid = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    _die_with_parent(parent_pid)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)

    settings = read_frame(requests)
    if settings is None:
        return
    test_hooks = bool(settings.get("test_hooks"))

    import logging
    import signal

    from math_verify import parse, verify

    _limit_memory(settings.get("check_memory_mb"))

    # Timeouts are ours; math-verify warns once when its own are disabled.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def on_alarm(signum: int, frame: Any) -> None:
        raise SoftTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    _warm_up(parse, verify)
    replies.write(pack(("ready", os.getpid())))

    while True:
        message = read_frame(requests)
        if message is None:
            return
        _, pairs, timeout_s = message
        for answer, gold in pairs:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
                try:
                    if test_hooks and answer.startswith(HOOK_PREFIX):
                        reply = _run_hook(answer)
                    else:
                        gold_parsed = parse(gold, parsing_timeout=None)
                        answer_parsed = parse(answer, parsing_timeout=None)
                        correct = verify(gold_parsed, answer_parsed, timeout_seconds=None)
                        reply = ("ok", bool(correct), _math_repr(answer_parsed), _math_repr(gold_parsed))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except SoftTimeout:
                reply = ("timeout",)
            except Exception as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
            replies.write(pack(reply))


if __name__ == "__main__":
    # Run as a script, Python put this folder first on sys.path: drop it so sibling files
    # cannot shadow top-level modules in the worker.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        main()
