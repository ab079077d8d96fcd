"""P's life: harden, read the solution, fork before reading the tests, run them, report."""

import _signal
import gc
import os
import resource
import struct
import sys
from _signal import SIGKILL

from .ipc import read_exact, read_rest, send_msg, write_all
from .loop import run_tests, worker_request
from .privileges import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, load_libc, prctl, set_signals
from .procs import quietly, reap_orphans
from .spawn import fork_worker, start_zygote
from .wire import dumps, loads
from .worker import prepare

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Iterable
    from typing import Any, NoReturn

    from .privileges import _Libc
    from .spawn import Worker, Zygote
    from .worker import State

REPORT_VERSION = "sdpo-code-harness/1"

# Stdlib modules without import side effects (no threads, no output) that may be imported
# before forking; anything else a solution imports, it imports itself.
PRELOADABLE = frozenset(
    [
        "abc",
        "array",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "copy",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "typing",
        "unicodedata",
    ]
)


def _scrub_stdin() -> bool:
    """Empty stdin if it is a file: another process of the sandbox (its init) may hold it open,
    and the solution could read the tests through ``/proc/<pid>/fd/0``. Runs before any
    worker exists. A pipe needs nothing: reading it consumed the data."""
    if os.fstat(0).st_mode & 0o170000 != 0o100000:
        return True
    try:
        os.ftruncate(0, 0)
        return True
    except OSError:
        pass
    try:
        fd = os.open("/proc/self/fd/0", os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        return True
    except OSError:
        return False


def _harden(libc: "_Libc | None") -> list[str]:
    """Make P non-dumpable, a subreaper, deaf to signals; the notes on what could not be done."""
    notes = []
    if prctl(libc, PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        notes.append("harness could not make itself non-dumpable (no ctypes or prctl)")
    prctl(libc, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # a direct worker's orphans come back to P
    set_signals(_signal.SIG_IGN)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big-integer answers are legitimate
    return notes


def _preload(names: "Iterable[str]") -> None:
    """Import stdlib modules the solution or the tests will import, once, before forking:
    every worker then inherits them instead of importing them again."""
    for name in names:
        if name in PRELOADABLE:
            try:  # noqa: SIM105 (contextlib costs import time)
                __import__(name)
            except Exception:
                pass


def _start_workers(state: "State", public: "dict[str, Any]") -> "tuple[Worker | None, Zygote | None]":
    """Before the tests are read: fork the first test's worker, and Z for any further tests."""
    first: Worker | None = None
    zyg: Zygote | None = None
    plan = public["workers"]
    gc.freeze()  # inherited objects stay out of the collector: fewer copy-on-write faults
    if plan:
        first = fork_worker(
            state, {"op": "run", "mode": plan[0][0], "fn": plan[0][1], "limits": public["limits"]}
        )
    if len(plan) > (1 if first is not None else 0):
        zyg = start_zygote(state)
    return first, zyg


def _scrub_path() -> None:
    """Drop the harness's own entries from ``sys.path``: its zip and the scratch dir holding it.
    Lazy imports (by test code, say) must never see files the solution wrote there; every
    module of the harness is imported by now."""
    archive = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # harness.zip/<package>/main.py
    own = {archive, os.path.dirname(archive)}
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) not in own]


def main() -> "NoReturn":
    """P: from the payload on stdin to the report on stdout, then exit 0."""
    _scrub_path()
    libc = load_libc()
    notes = _harden(libc)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "notes": notes,
        "tests": [],
        "compile_error": None,
        "harness_error": None,
    }
    first: Worker | None = None
    zyg: Zygote | None = None
    try:
        (size,) = struct.unpack(">Q", read_exact(0, 8))
        public = loads(read_exact(0, size))  # the solution and a plan of the workers: not secret
        _preload(public.get("preload") or ())
        state = prepare(libc, public)
        report["compile_error"] = state["compile_error"]
        if state["compile_error"] is None:
            first, zyg = _start_workers(state, public)
        spec = loads(read_rest(0))  # the tests: read only now, after every fork that needs no tests
        if not _scrub_stdin():
            notes.append("stdin could not be cleared: the tests may be readable by the solution")
        os.close(0)
        if state["compile_error"] is None:
            plan = [[r["mode"], r["fn"]] for r in (worker_request(t, None) for t in spec["tests"])]
            if plan != public["workers"]:
                raise RuntimeError("the worker plan does not match the tests")
            report["tests"] = run_tests(spec["tests"], public["limits"], first, zyg)
            first = None
    except BaseException:
        import traceback  # only on a failure: its imports would slow every start

        report["harness_error"] = traceback.format_exc(limit=8)[-4000:]
    if first is not None:  # never used: the tests could not be read
        quietly(os.kill, first.pid, SIGKILL)
        first.close()
    if zyg is not None:
        quietly(send_msg, zyg.sock, {"op": "quit"})
    reap_orphans()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_s"] = {
        "harness": own.ru_utime + own.ru_stime,
        "zygote_and_workers": children.ru_utime + children.ru_stime,
    }
    write_all(1, dumps(report).encode())
    os._exit(0)
