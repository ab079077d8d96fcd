"""The unsafe ``process`` backend: refused by default, loud when used, limits still enforced."""

from __future__ import annotations

import os
import time
import uuid
import warnings

import pytest

from sdpo_envs.sandbox import Limits, SandboxUnavailable, get_backend, run_python
from sdpo_envs.sandbox.process import ProcessBackend

SMALL = Limits(cpu_s=1.0, wall_s=4.0, memory_mb=256, output_bytes=16 * 1024, processes=16, disk_mb=8)


@pytest.fixture(scope="module")
def backend():
    with pytest.warns(RuntimeWarning, match="does NOT isolate"):
        instance = ProcessBackend()
    return instance


def run(backend, code: str, **kwargs):
    kwargs.setdefault("limits", SMALL)
    return backend.run([backend.python, "main.py"], files={"main.py": code}, **kwargs)


def test_refused_without_allow_unsafe():
    with pytest.raises(SandboxUnavailable, match="allow_unsafe"):
        get_backend("process")


def test_run_python_with_allow_unsafe():
    with warnings.catch_warnings():  # warned once per instance, and the instance is shared
        warnings.simplefilter("ignore", RuntimeWarning)
        result = run_python(
            "print(input() * 2)", stdin="ab\n", backend="process", allow_unsafe=True, limits=SMALL
        )
    assert result.status == "ok", result
    assert result.stdout == "abab\n"
    assert result.isolation.backend == "process"
    assert "filesystem isolation" in " ".join(result.isolation.missing)
    assert not ProcessBackend.trusted_isolation


def test_exit_code_and_files(backend):
    code = "from helper import VALUE\nimport sys\nprint(VALUE)\nsys.exit(3)"
    result = backend.run(
        [backend.python, "main.py"], files={"main.py": code, "helper.py": "VALUE = 5"}, limits=SMALL
    )
    assert result.status == "runtime_error"
    assert result.exit_code == 3
    assert result.stdout == "5\n"


def test_scratch_dir_is_removed(backend):
    result = run(backend, "import os\nopen('made.txt', 'w').write('x')\nprint(os.getcwd())")
    scratch = result.stdout.strip()
    assert result.status == "ok" and scratch
    assert not os.path.exists(scratch)


def test_cpu_time_limit(backend):
    result = run(backend, "while True:\n    pass", limits=Limits(cpu_s=1.0, wall_s=10.0, memory_mb=256))
    assert result.status == "time_limit", result
    assert result.cpu_s >= 0.5


def test_wall_clock_limit(backend):
    result = run(backend, "import time\ntime.sleep(60)", limits=Limits(cpu_s=1.0, wall_s=1.0, memory_mb=256))
    assert result.status == "time_limit"


def test_memory_limit(backend):
    result = run(backend, "data = bytearray(10 * 1024**3)")
    assert result.status == "memory_limit", result


def test_output_limit(backend):
    result = run(backend, "while True:\n    print('y' * 1000)")
    assert result.status == "output_limit"
    assert len(result.stdout) <= SMALL.output_bytes


@pytest.mark.skipif(
    os.geteuid() != 0, reason="daemons are only swept when the program runs under a uid of its own"
)
def test_daemon_is_killed_under_its_own_uid(backend):
    marker = f"sdpo-process-daemon-{uuid.uuid4().hex}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
    os._exit(0)
time.sleep(0.5)
"""
    assert run(backend, code).status == "ok"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            break
        time.sleep(0.05)
    assert not alive
