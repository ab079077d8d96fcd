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

from sdpo_envs.sandbox import Limits

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = Limits(cpu_s=1.0, wall_s=4.0, memory_mb=128, output_bytes=64 * 1024, processes=16, disk_mb=8)


SANDBOX_BACKENDS = ("bwrap", "docker")
BACKEND_AS = "instance"


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


# -- host files ------------------------------------------------------------------------------
def _docker_socket_paths() -> list[str]:
    paths = ["/var/run/docker.sock", "/run/docker.sock"]
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        paths.insert(0, host[len("unix://") :])
    return paths


def test_host_secret_files_are_not_readable(backend):
    targets = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/root",
        "/home",
        str(PROJECT_ROOT),
        str(PROJECT_ROOT / "pyproject.toml"),
        str(PROJECT_ROOT / ".git" / "config"),
        *_docker_socket_paths(),
        "/proc/1/root/etc/shadow",  # the host's root through its init, were it visible
        f"/proc/{os.getpid()}/cwd",  # the test process's cwd, were its pid visible
    ]
    code = f"""
import os
for path in {targets!r}:
    try:
        if os.path.isdir(path):
            print(path, "LISTED", os.listdir(path))
        else:
            with open(path, "rb") as fh:
                print(path, "READ", fh.read(200))
    except OSError as exc:
        print(path, "denied", type(exc).__name__)
"""
    result = run(backend, code)
    assert result.status == "ok", result
    lines = result.stdout.splitlines()
    assert len(lines) == len(targets), result.stdout
    for path, line in zip(targets, lines):
        assert line.startswith(f"{path} denied"), line
    if os.access("/etc/shadow", os.R_OK):
        first = Path("/etc/shadow").read_text().splitlines()[0]
        assert first not in result.stdout


def test_host_processes_are_invisible_through_proc(backend):
    marker = f"sdpo-canary-{uuid.uuid4().hex}"
    secret = f"canary-secret-{uuid.uuid4().hex}"
    canary = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        env={**os.environ, "SDPO_CANARY_SECRET": secret},
    )
    try:
        code = f"""
import os
hits = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + [{str(canary.pid)!r}, {str(os.getpid())!r}]:
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{{pid}}/{{name}}", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if {marker!r}.encode() in data or {secret!r}.encode() in data or b"pytest" in data:
            hits.append((pid, name))
print("hits", hits)
"""
        result = run(backend, code)
    finally:
        canary.kill()
        canary.wait()
    assert result.status == "ok", result
    assert result.stdout == "hits []\n"
    assert marker not in result.stdout and secret not in result.stdout


# -- secrets in the parent's environment -----------------------------------------------------
def test_planted_secrets_and_the_engine_address_are_not_inherited(backend, monkeypatch):
    planted = {
        "AWS_SECRET_ACCESS_KEY": f"aws-{uuid.uuid4().hex}",
        "HF_TOKEN": f"hf-{uuid.uuid4().hex}",
        "OPENAI_API_KEY": f"sk-{uuid.uuid4().hex}",
    }
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    code = """
import os
print(sorted(os.environ))
for path in ("/proc/self/environ", "/proc/1/environ"):
    try:
        print(open(path, "rb").read())
    except OSError as exc:
        print(path, type(exc).__name__)
"""
    result = run(backend, code, env={"GIVEN": "on-purpose"})
    assert result.status == "ok", result
    for key, value in planted.items():
        assert key not in result.stdout and value not in result.stdout
    assert "DOCKER_HOST" not in result.stdout  # the engine's address is not handed over either
    assert "'GIVEN'" in result.stdout.splitlines()[0]  # only what the caller passes on purpose


# -- sockets ---------------------------------------------------------------------------------
def test_loopback_unix_and_engine_sockets_are_unreachable(backend, tmp_path):
    tag = uuid.uuid4().hex
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix_path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(4)
        udp.bind(("127.0.0.1", 0))
        unix.bind(unix_path)
        unix.listen(4)
        abstract.bind(f"\0sdpo-test-{tag}")  # abstract names live in the network namespace
        abstract.listen(4)
        for sock in (tcp, udp, unix, abstract):
            sock.setblocking(False)
        stream_targets = [
            ("inet", ["127.0.0.1", tcp.getsockname()[1]]),
            ("inet", ["localhost", tcp.getsockname()[1]]),
            ("unix", unix_path),
            ("unix", f"\0sdpo-test-{tag}"),
            *[("unix", path) for path in _docker_socket_paths()],
        ]
        code = f"""
import socket
for family, address in {stream_targets!r}:
    fam = socket.AF_INET if family == "inet" else socket.AF_UNIX
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(tuple(address) if family == "inet" else address)
            sock.sendall(b"GET /_ping HTTP/1.0\\r\\n\\r\\n")
            print("CONNECTED", address, sock.recv(100))
    except OSError as exc:
        print("blocked", repr(address), type(exc).__name__)
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"{tag}", ("127.0.0.1", {udp.getsockname()[1]}))
    print("udp sent")
except OSError as exc:
    print("udp blocked", type(exc).__name__)
"""
        result = run(backend, code)
        for server in (tcp, unix, abstract):
            with pytest.raises(BlockingIOError):
                server.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)
    finally:
        for sock in (tcp, udp, unix, abstract):
            sock.close()
    assert result.status == "ok", result
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("blocked") >= len(stream_targets)


# -- signals and ptrace against host processes -----------------------------------------------
def _tracer_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return -1


def test_host_processes_cannot_be_killed_or_traced(backend):
    import signal

    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: received.append(signum))
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        targets = [canary.pid, os.getpid(), 1]
        code = f"""
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for pid in {targets!r}:
    if pid == os.getpid():
        continue  # our own pid number inside the sandbox: not a host process
    for sig in (signal.SIGUSR1, signal.SIGKILL) if pid != 1 else (signal.SIGUSR1,):
        try:
            os.kill(pid, sig)
            print("signalled", pid, int(sig))
        except OSError as exc:
            print("refused", pid, type(exc).__name__)
    for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
        rc = libc.ptrace(request, pid, None, None)
        print("ptrace", pid, request, "attached" if rc == 0 else f"refused errno={{ctypes.get_errno()}}")
print("done")
"""
        result = run(backend, code)
        time.sleep(0.2)  # a signal, had one been delivered, has arrived by now
        assert canary.poll() is None, "a sandboxed program killed a host process"
        assert _tracer_pid(canary.pid) == 0 and _tracer_pid(os.getpid()) == 0
        assert received == [], "a sandboxed program signalled the test process"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        canary.kill()
        canary.wait()
    assert result.status in ("ok", "runtime_error"), result
    assert "done" in result.stdout
    assert "attached" not in result.stdout, result.stdout
    assert "signalled" not in result.stdout.replace("signalled 1 ", ""), result.stdout
    assert run(backend, "print('still fine')").stdout == "still fine\n"


# -- daemons ---------------------------------------------------------------------------------
DAEMONS = {
    # setsid, ignore every catchable signal, close the output pipes, then sleep
    "signal-proof": """
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    if os.fork() == 0:
        os.closerange(0, 3)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
    os._exit(0)
time.sleep(0.3)
print("planted")
""",
    # keeps the program's stdout open: the run must end anyway, and the daemon with it
    "holds-stdout": """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
time.sleep(0.3)
print("planted")
""",
    # a daemon that keeps re-forking, so its pid is never the same twice
    "pid-hopper": """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    while True:
        if os.fork():
            os._exit(0)
        time.sleep(0.01)
        if os.getpid() % 7 == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
time.sleep(0.3)
print("planted")
""",
}


@pytest.mark.parametrize("kind", list(DAEMONS))
def test_daemon_variants_do_not_survive_the_run(backend, kind):
    marker = f"sdpo-daemon-{uuid.uuid4().hex}"
    result = run(backend, f"MARKER = {marker!r}\n" + DAEMONS[kind])
    assert result.status == "ok", result
    assert result.stdout == "planted\n"
    deadline = time.monotonic() + 5
    while _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes_with(marker) == []
    assert run(backend, "print('next')").stdout == "next\n"


# -- /dev/shm, /tmp and SysV IPC between runs ------------------------------------------------
def test_shm_tmp_and_sysv_ipc_do_not_persist_between_runs(backend):
    tag = uuid.uuid4().hex[:12]
    key = int(tag[:7], 16) + 1  # a SysV key no one else uses
    plant = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for path in ("/dev/shm/x-{tag}", "/tmp/x-{tag}"):
    with open(path, "w") as fh:
        fh.write("{tag}")
    print("wrote", path)
IPC_CREAT = 0o1000
print("shm", libc.shmget({key}, 4096, IPC_CREAT | 0o666) >= 0)
print("msg", libc.msgget({key}, IPC_CREAT | 0o666) >= 0)
print("sem", libc.semget({key}, 1, IPC_CREAT | 0o666) >= 0)
"""
    first = run(backend, plant)
    assert first.status == "ok", first
    assert first.stdout.splitlines()[-3:] == ["shm True", "msg True", "sem True"], first.stdout
    look = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(os.path.exists("/dev/shm/x-{tag}"), os.path.exists("/tmp/x-{tag}"))
print(libc.shmget({key}, 0, 0), libc.msgget({key}, 0), libc.semget({key}, 0, 0))
for kind in ("shm", "msg", "sem"):
    try:
        print(kind, len(open(f"/proc/sysvipc/{{kind}}").read().splitlines()) - 1)
    except OSError:
        print(kind, 0)
"""
    second = run(backend, look)
    assert second.status == "ok", second
    assert second.stdout.splitlines() == ["False False", "-1 -1 -1", "shm 0", "msg 0", "sem 0"]
    # Nor did any of it reach the host.
    assert not Path(f"/dev/shm/x-{tag}").exists() and not Path(f"/tmp/x-{tag}").exists()
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            keys = {int(row.split()[0]) for row in fh.read().splitlines()[1:] if row.split()}
        assert key not in keys, f"a SysV {kind} object of the sandbox is on the host"


# -- inherited file descriptors --------------------------------------------------------------
def test_only_stdin_stdout_and_stderr_are_inherited(backend, tmp_path):
    secret = f"fd-secret-{uuid.uuid4().hex}"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    leaked = os.open(secret_file, os.O_RDONLY)  # inheritable on purpose: a careless parent
    os.set_inheritable(leaked, True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.set_inheritable(True)
    code = """
import os
open_fds = []
for fd in range(3, 65):
    try:
        os.fstat(fd)
        open_fds.append(fd)
    except OSError:
        pass
print("extra", open_fds)
for fd in open_fds:
    try:
        print(os.readlink(f"/proc/self/fd/{fd}"), os.read(fd, 100))
    except OSError as exc:
        print(fd, type(exc).__name__)
print("listed", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
"""
    try:
        with_stdin = run(backend, code, stdin="some input")
        without = run(backend, code)
    finally:
        os.close(leaked)
        listener.close()
    for result in (with_stdin, without):
        assert result.status == "ok", result
        lines = result.stdout.splitlines()
        assert lines[0] == "extra []", result.stdout
        # 0, 1, 2 and the directory descriptor that listdir itself holds open
        assert lines[-1] == "listed [0, 1, 2, 3]", result.stdout
        assert secret not in result.stdout


# -- floods ----------------------------------------------------------------------------------
def test_thread_flood_is_contained(backend):
    code = """
import threading, time
started = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        started += 1
except (RuntimeError, MemoryError) as exc:
    print("stopped after", started, type(exc).__name__)
"""
    result = run(backend, code)
    assert result.status in ("ok", "runtime_error", "memory_limit", "time_limit"), result
    if result.status == "ok":
        assert int(result.stdout.split()[2]) < SMALL.processes + 1, result.stdout  # the task cap held
    assert run(backend, "print('alive')").stdout == "alive\n"


def test_stderr_flood_is_an_output_limit(backend):
    result = run(backend, "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)")
    assert result.status == "output_limit", result
    assert len(result.stderr.encode()) <= SMALL.output_bytes
    assert result.extra["stderr_bytes"] > SMALL.output_bytes


def test_memory_spread_over_processes_is_a_memory_limit(backend):
    # Each process stays far under the cap; together they are far over it.
    code = """
import os, time
for _ in range(4):
    if os.fork() == 0:
        block = bytearray(100 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(5)
        os._exit(0)
codes = [os.waitstatus_to_exitcode(os.wait()[1]) for _ in range(4)]
print("all allocated" if codes == [0, 0, 0, 0] else f"children ended with {codes}")
"""
    result = run(backend, code, limits=Limits(cpu_s=2, wall_s=8, memory_mb=128, processes=16))
    assert result.status == "memory_limit", result
    assert "all allocated" not in result.stdout


def test_tmp_fill_and_inode_flood_are_contained(backend):
    code = """
import errno, os
try:
    with open("/tmp/fill.bin", "wb") as fh:
        while True:
            fh.write(b"x" * 65536)
            fh.flush()
except OSError as exc:
    print("tmp", errno.errorcode.get(exc.errno, exc.errno), os.path.getsize("/tmp/fill.bin") >> 20)
os.unlink("/tmp/fill.bin")
made = 0
try:
    while made < 200000:
        open(f"f{made}", "w").close()
        made += 1
    print("files", "all", made)
except OSError as exc:
    print("files", errno.errorcode.get(exc.errno, exc.errno), made)
"""
    result = run(backend, code, limits=Limits(cpu_s=4, wall_s=15, memory_mb=128, disk_mb=8))
    # Inodes of a tmpfs are kernel memory charged to the tree: the memory cap may end it first.
    assert result.status in ("ok", "time_limit", "memory_limit"), result
    if result.status == "ok":
        tmp, files = result.stdout.splitlines()
        words = tmp.split()
        assert words[1] in ("ENOSPC", "EFBIG", "EDQUOT") and int(words[2]) <= 8, tmp
        assert files.split()[1] in ("ENOSPC", "EDQUOT", "all"), files
    assert run(backend, "import os\nprint(os.listdir('.'), os.listdir('/tmp'))").stdout == "['main.py'] []\n"
