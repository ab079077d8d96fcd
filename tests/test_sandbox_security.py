"""Hostile programs against every isolating sandbox backend: each must be contained.

Each test runs a real program; nothing is mocked. Limits are small so the file stays fast.
Tests check statuses and effects on the host, never timings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sdpo_envs.sandbox import Limits, available_backends, get_backend

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = Limits(cpu_s=1.0, wall_s=4.0, memory_mb=128, output_bytes=64 * 1024, processes=16, disk_mb=8)

_reasons: dict[str, str | None] = {}


def _reason(name: str) -> str | None:
    if not _reasons:
        _reasons.update(available_backends())
    return _reasons[name]


@pytest.fixture(params=["bwrap", "docker"])
def backend(request):
    reason = _reason(request.param)
    if reason is not None:
        pytest.skip(f"sandbox backend {request.param!r} is unavailable here: {reason}")
    return get_backend(request.param)


def run(backend, code: str, *, stdin: str = "", limits: Limits = SMALL, **kwargs):
    return backend.run(
        [backend.python, "main.py"], files={"main.py": code}, stdin=stdin, limits=limits, **kwargs
    )


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


# -- normal behaviour ----------------------------------------------------------------------
def test_stdin_stdout_round_trip(backend):
    code = "import sys\ndata = sys.stdin.read()\nprint(data.upper(), end='')\nprint('err', file=sys.stderr)"
    result = run(backend, code, stdin="hello sandbox\n")
    assert result.status == "ok", result
    assert result.exit_code == 0
    assert result.stdout == "HELLO SANDBOX\n"
    assert result.stderr == "err\n"
    assert result.isolation.backend == backend.name
    assert result.isolation.enforced


def test_exit_code_propagates(backend):
    result = run(backend, "import sys\nprint('before')\nsys.exit(7)")
    assert result.status == "runtime_error"
    assert result.exit_code == 7
    assert result.stdout == "before\n"


def test_exception_is_runtime_error(backend):
    result = run(backend, "raise ValueError('boom')")
    assert result.status == "runtime_error"
    assert "ValueError: boom" in result.stderr


def test_limits_validation():
    for bad in ({"cpu_s": 0}, {"wall_s": -1}, {"memory_mb": 0}, {"output_bytes": -5}, {"processes": "4"}):
        with pytest.raises(ValueError):
            Limits(**bad)
    assert Limits(cpu_s=0.5).cpu_s == 0.5


# -- hostile programs ------------------------------------------------------------------------
def test_network_is_unreachable(backend):
    # A server on the host's loopback: a sandbox with network access could reach it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"""
import socket
for host, port in (("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)):
    try:
        socket.create_connection((host, port), timeout=1).close()
        print("CONNECTED", host)
    except OSError as exc:
        print("blocked", host, type(exc).__name__)
"""
        result = run(backend, code)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result.status == "ok", result
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("blocked") == 3


def test_home_directory_is_not_visible(backend):
    secret = f"secret-{uuid.uuid4().hex}"
    probe = Path.home() / f".sdpo_sandbox_probe_{uuid.uuid4().hex}"
    probe.write_text(secret)
    try:
        code = f"""
import os
for path in ({str(probe)!r}, {str(Path.home())!r}, {str(PROJECT_ROOT)!r}):
    try:
        if os.path.isdir(path):
            print(path, "LISTED", os.listdir(path))
        else:
            print(path, "READ", open(path).read())
    except OSError as exc:
        print(path, "denied", type(exc).__name__)
"""
        result = run(backend, code)
    finally:
        probe.unlink()
    assert result.status == "ok", result
    assert secret not in result.stdout
    assert "READ" not in result.stdout and "LISTED" not in result.stdout


def test_parent_environment_is_not_visible(backend, monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("SDPO_SANDBOX_TEST_SECRET", secret)
    code = """
import os
print(sorted(os.environ.items()))
for pid in os.listdir('/proc') if os.path.isdir('/proc') else []:
    if pid.isdigit():
        try:
            print(open(f'/proc/{pid}/environ', 'rb').read())
        except OSError:
            pass
"""
    result = run(backend, code)
    assert result.status == "ok", result
    assert secret not in result.stdout
    assert "SDPO_SANDBOX_TEST_SECRET" not in result.stdout


def test_writes_outside_scratch_do_not_reach_the_host(backend):
    tag = uuid.uuid4().hex
    targets = [
        Path("/tmp") / f"sdpo-escape-{tag}",
        PROJECT_ROOT / f"sdpo-escape-{tag}",
        Path.home() / f"sdpo-{tag}",
    ]
    targets += [Path("/usr") / f"sdpo-escape-{tag}", Path("/") / f"sdpo-escape-{tag}"]
    code = f"""
import os
for path in {[str(t) for t in targets]!r}:
    try:
        with open(path, "w") as fh:
            fh.write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("refused", path, type(exc).__name__)
with open("inside.txt", "w") as fh:
    fh.write("fine")
print("scratch ok", open("inside.txt").read())
"""
    result = run(backend, code)
    assert result.status == "ok", result
    assert "scratch ok fine" in result.stdout
    for target in targets:
        assert not target.exists(), f"the sandbox wrote {target} on the host"
    # Whatever landed in the sandbox's own /tmp stayed there.
    again = run(backend, f"import os\nprint(os.path.exists({str(targets[0])!r}))")
    assert again.stdout.strip() == "False"


def test_fork_bomb_is_contained(backend):
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    result = run(backend, code, limits=Limits(cpu_s=1, wall_s=3, memory_mb=128, processes=16))
    assert result.status in ("runtime_error", "time_limit", "memory_limit"), result
    # The machine survived and the backend still works.
    assert run(backend, "print('alive')").stdout == "alive\n"


def test_allocating_10_gb_is_a_memory_limit(backend):
    result = run(backend, "data = bytearray(10 * 1024**3)\nprint(len(data))")
    assert result.status == "memory_limit", result
    assert "10737418240" not in result.stdout


def test_busy_loop_is_a_time_limit(backend):
    limits = Limits(cpu_s=1.0, wall_s=10.0, memory_mb=128)
    result = run(backend, "while True:\n    pass", limits=limits)
    assert result.status == "time_limit", result
    assert 0.5 <= result.cpu_s <= limits.cpu_s + 2.0


def test_sleeping_forever_hits_the_wall_clock(backend):
    result = run(backend, "import time\ntime.sleep(3600)", limits=Limits(cpu_s=1, wall_s=1.5, memory_mb=128))
    assert result.status == "time_limit", result
    assert result.cpu_s < 1.0


def test_stdout_flood_is_an_output_limit(backend):
    result = run(backend, "while True:\n    print('x' * 4096)")
    assert result.status == "output_limit", result
    assert len(result.stdout.encode()) <= SMALL.output_bytes


def test_filling_the_disk_is_contained(backend):
    code = """
import errno, os
written = 0
try:
    with open("fill.bin", "wb") as fh:
        while True:
            fh.write(b"x" * 65536)
            fh.flush()
            written += 65536
except OSError as exc:
    print("stopped", errno.errorcode.get(exc.errno, exc.errno), written // (1 << 20))
    raise SystemExit(1)
"""
    result = run(backend, code)
    assert result.status == "runtime_error", result
    words = result.stdout.split()
    assert words[0] == "stopped" and words[1] in ("ENOSPC", "EFBIG", "EDQUOT"), result.stdout
    assert int(words[2]) <= SMALL.disk_mb


def test_daemon_does_not_survive_the_run(backend):
    marker = f"sdpo-daemon-{uuid.uuid4().hex}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
    os._exit(0)
for _ in range(300):
    seen = False
    for pid in os.listdir("/proc"):
        try:
            seen |= {marker!r}.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read()
        except OSError:
            pass
    if seen:
        print("daemon running")
        break
    time.sleep(0.01)
"""
    result = run(backend, code)
    assert result.status == "ok", result
    assert "daemon running" in result.stdout
    deadline = time.monotonic() + 5
    while _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes_with(marker) == []


def test_signalling_the_parent_is_harmless(backend):
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = """
import os, signal
for target in (os.getppid(), -1, 1):
    try:
        os.kill(target, signal.SIGKILL)
        print("sent", target)
    except OSError as exc:
        print("refused", target, type(exc).__name__)
print("survived")
"""
        result = run(backend, code)
        assert canary.poll() is None, "a sandboxed program killed a host process"
    finally:
        canary.kill()
        canary.wait()
    assert result.status in ("ok", "runtime_error"), result
    assert run(backend, "print('still fine')").stdout == "still fine\n"


def test_mounting_a_filesystem_fails(backend):
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
print("mounted" if rc == 0 else f"mount-failed errno={ctypes.get_errno()}")
rc = libc.mount(b"/usr", b"/usr", None, 4096 | 32, None)  # MS_BIND | MS_REMOUNT
print("remounted" if rc == 0 else f"remount-failed errno={ctypes.get_errno()}")
"""
    result = run(backend, code)
    assert result.status == "ok", result
    assert "mount-failed" in result.stdout and "remount-failed" in result.stdout
