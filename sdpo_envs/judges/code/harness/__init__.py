"""Trusted in-sandbox test runner of the code judge (stdlib only, CPython >= 3.9).

``build`` ships this package to the sandbox as a zip (``harness.zip``, the package named
``sdpo_harness`` in it), its modules compiled once by the sandbox's own interpreter, and the
judge starts it from that zip (``__main__``); ``sdpo_envs`` never runs it on the host, where
it only imports the names below. One interpreter start per solution, one fork per test.
Processes:

* **P** (the harness's process, trusted) reads the solution, compiles it and imports the
  stdlib modules it names (compiling executes nothing); then, *before reading the tests*,
  forks the worker of the first test and, if there are more tests, the zygote **Z**, so that
  neither ever holds an expected output. Only then does P read the tests (and empty its
  stdin), run every test, compare results and write the only report. P is non-dumpable
  (nothing it forks can ptrace it or open ``/proc/<P>/{mem,fd}``), ignores every catchable
  signal and is a subreaper (the first worker's orphans come back to it and are killed).
* **Z** (trusted, only for tests 2..n) forks one worker per test on P's request, reaps it
  (Z is a subreaper too) and reports its exit status and CPU time.
* **W** (worker, untrusted once it runs the solution): own process group, per-test rlimits,
  no capabilities, no_new_privs; stdin/stdout/stderr are pipes to P and a socket to P is its
  only other fd. It waits for P's "go" (sent after P has read and cleared the tests), then
  runs the solution as ``__main__`` (stdio tests) or serves calls of the entry point (call
  and assert tests), returning each result as a tagged-JSON value.

Anti-forgery: no worker holds an expected output, and none can reach P's stdout (the report
channel) or memory. P decodes a worker's results with a JSON parser into fresh plain data
(no Python syntax is parsed, nothing executed), so an object with a rigged ``__eq__``
cannot pass; the asserts of assert tests run in P with ``candidate`` a proxy that forwards
each call to the worker. A worker's messages can only make a test fail: a pass always rests
on P's own comparison and the worker's exit status. P writes the report to fd 1 once, after
every worker is dead, and exits 0; the host accepts only one report from a run that exited 0.

Wire format: stdin = 8-byte big-endian length + JSON ``{"solution", "prelude", "filename",
"site_dirs", "preload", "limits", "workers"}`` (``workers``: each test's worker mode and
function, no test data; read before any fork) + JSON ``{"tests": [...]}`` (read after).
Once read, stdin is emptied if it is a file (see ``main``). Values crossing P<->W: ``wire``.

Imports are the C modules where the public wrapper would pull in ``re``/``enum`` (tens of
milliseconds per solution, the harness's main cost).

Modules, by concern: ``wire`` (JSON, tagged values), ``compare`` (results and outputs),
``privileges`` (prctl, capabilities, signals), ``procs`` (reaping), ``ipc`` (fds, frames,
P<->Z messages), ``worker`` (W), ``zygote`` (Z), ``spawn`` (how P gets a worker), ``run``
(one test's worker driven by P), ``verdict`` (how it ended), ``kinds`` (stdio, call and
assert tests), ``loop`` (every test in turn), ``main`` (P from start to report).
"""

from .compare import outputs_match, values_equal
from .loop import worker_request
from .main import PRELOADABLE, REPORT_VERSION
from .run import STARVED
from .wire import from_wire, to_wire

__all__ = [
    "PRELOADABLE",
    "REPORT_VERSION",
    "STARVED",
    "from_wire",
    "outputs_match",
    "to_wire",
    "values_equal",
    "worker_request",
]
