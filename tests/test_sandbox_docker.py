"""Docker-specific behaviour of the ``docker`` sandbox backend (needs a running engine).

The generic hostile-program checks shared with bwrap live in ``test_sandbox_security.py``.
No test here asserts on timings.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from sdpo_envs.sandbox import Limits, identity, run_python
from sdpo_envs.sandbox.docker import supervisor as supervisor_package
from sdpo_envs.sandbox.docker.backend import LABEL, OWNER_LABEL, DockerBackend
from sdpo_envs.sandbox.docker.image import SUPERVISOR_DIR, ensure_image, image_tag, rootfs_tar

REASON = DockerBackend.probe()
_skip_without_engine = pytest.mark.skipif(REASON is not None, reason=f"docker backend unavailable: {REASON}")


def needs_engine(test):
    """A test that talks to a Docker engine: marked ``docker``, skipped with the reason when none answers."""
    return pytest.mark.docker(_skip_without_engine(test))


FAST = Limits(cpu_s=1.0, wall_s=2.0, memory_mb=256, processes=32, output_bytes=64 * 1024, disk_mb=16)


@pytest.fixture(scope="module")
def backend():
    if REASON is not None:
        pytest.skip(f"docker backend unavailable: {REASON}")
    instance = DockerBackend(pool_size=2)
    yield instance
    instance.close()


def run(backend: DockerBackend, code: str, limits: Limits = FAST, **kwargs):
    return backend.run(
        [backend.python, "main.py"], files={"main.py": textwrap.dedent(code)}, limits=limits, **kwargs
    )


# ----------------------------------------------------------------- without an engine


def test_probe_explains_an_unreachable_engine(monkeypatch, tmp_path):
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    reason = DockerBackend.probe()
    assert reason is not None
    assert "DOCKER_HOST" in reason and "no-such.sock" in reason
    assert "dockerd.sh start" in reason


def test_probe_explains_a_missing_sdk(monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)  # makes `import docker` fail
    reason = DockerBackend.probe()
    assert reason is not None and "pip install 'sdpo-gym[docker]'" in reason


def test_importing_the_backend_imports_neither_docker_nor_torch():
    code = (
        "import sys, sdpo_envs, sdpo_envs.sandbox.docker.backend, sdpo_envs.sandbox.docker.image\n"
        "bad = [m for m in ('docker', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_rootfs_is_deterministic_and_carries_the_supervisor():
    # Another process, another hash seed, a second later: the same bytes, so the same tag and
    # an engine that already has the image reuses it.
    other = subprocess.run(
        [sys.executable, "-c", "from sdpo_envs.sandbox.docker.image import image_tag; print(image_tag())"],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert other == image_tag()
    with tarfile.open(fileobj=io.BytesIO(rootfs_tar())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {m.mtime for m in members.values()} == {0}
        supervisor = Path(supervisor_package.__file__).with_name("main.py")
        packed = tar.extractfile(members[f"{SUPERVISOR_DIR.lstrip('/')}/main.py"])
        assert packed is not None and packed.read() == supervisor.read_bytes()


# ----------------------------------------------------------------- with an engine


@needs_engine
def test_image_is_built_locally_once_and_reused(backend):
    client = backend._client
    assert backend.image == image_tag()
    image = client.images.get(backend.image)
    assert not image.attrs.get("RepoDigests")  # imported here, never pulled from a registry
    assert ensure_image(client) == backend.image
    assert client.images.get(backend.image).id == image.id  # not rebuilt


@needs_engine
def test_container_is_reused_and_nothing_leaks_into_the_next_run(backend):
    first = run(
        backend,
        """
        import ctypes, os, time
        open("scratch.txt", "w").write("1")
        open("/tmp/leak.txt", "w").write("2")
        open("/dev/shm/leak", "w").write("3")
        os.makedirs("locked/inner")
        os.chmod("locked/inner", 0)
        os.chmod("locked", 0)
        ctypes.CDLL(None).shmget(4242, 4096, 0o1000 | 0o600)  # a SysV segment outlives processes
        if os.fork() == 0:  # a daemon that tries to survive the run
            os.setsid()
            if os.fork() == 0:
                time.sleep(1000)
            os._exit(0)
        print("planted")
        """,
    )
    assert first.status == "ok", first
    assert first.stdout == "planted\n"
    second = run(
        backend,
        """
        import os
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) == sorted({1, os.getpid()}))
        print(os.listdir("."), os.listdir("/tmp"), os.listdir("/dev/shm"), os.listdir("/work"))
        print(len(open("/proc/sysvipc/shm").read().splitlines()))
        """,
    )
    assert second.status == "ok", second
    assert second.extra["container_id"] == first.extra["container_id"]
    assert second.stdout.splitlines() == ["True", "['main.py'] [] [] ['run']", "1"]


@needs_engine
@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("while True: pass", "time_limit"),
        ("import time; time.sleep(60)", "time_limit"),
        ("x = bytearray(10 * 2**30)", "memory_limit"),  # refused at once: MemoryError
        ("chunks = [bytearray(2**20) for _ in range(1024)]", "memory_limit"),  # the memory cgroup
        ("import sys\nwhile True: sys.stdout.write('x' * 4096)", "output_limit"),
        ("raise SystemExit(3)", "runtime_error"),
        ("print('fine')", "ok"),
    ],
    ids=["busy-loop", "sleep", "huge-alloc", "gradual-alloc", "flood", "exit-3", "ok"],
)
def test_per_run_limits(backend, code, status):
    result = run(backend, code)
    assert result.status == status, result
    assert result.isolation.backend == "docker"
    if status == "output_limit":
        assert len(result.stdout) <= FAST.output_bytes < result.extra["stdout_bytes"]
    if status == "runtime_error":
        assert result.exit_code == 3
    if status in ("time_limit", "output_limit"):
        assert result.exit_code is None  # killed by the sandbox, not by the program


@needs_engine
def test_death_by_signal_is_reported_like_a_shell(backend):
    result = run(backend, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert result.status == "runtime_error", result
    assert result.exit_code == 128 + 15
    assert "SIGTERM" in result.detail


@needs_engine
def test_cpu_limit_covers_the_whole_process_tree(backend):
    result = run(
        backend,
        """
        import os
        for _ in range(3):
            if os.fork() == 0:
                while True:
                    pass
        os.wait()
        """,
        limits=Limits(cpu_s=0.5, wall_s=30.0, processes=32, memory_mb=256),  # CPU, not wall, must fire
    )
    assert result.status == "time_limit", result
    assert "CPU" in result.detail


@needs_engine
def test_no_network(backend):
    result = run(
        backend,
        """
        import socket
        print([name for _, name in socket.if_nameindex()])
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=1)
            print("connected")
        except OSError:
            print("refused")
        """,
    )
    assert result.status == "ok", result
    assert result.stdout.splitlines() == ["['lo']", "refused"]


@needs_engine
def test_read_only_root_non_root_user_no_capabilities(backend):
    result = run(
        backend,
        """
        import os
        for path in ("/etc/passwd", "/usr/evil", "/evil", "/work/evil", "../evil", "/sdpo/supervisor/main.py", "/sdpo/supervisor/evil.py"):
            try:
                open(path, "a")
                print("wrote", path)
            except OSError:
                pass
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
        print(os.getuid(), os.geteuid(), os.getgid(), status["CapEff"].strip(), status["NoNewPrivs"].strip())
        """,
    )
    assert result.status == "ok", result
    uid, euid, gid, caps, no_new_privs = result.stdout.split()
    # A uid of the container's own (leased, never shared with another container or run).
    assert (
        int(uid) == int(euid) == int(gid)
        and identity.UID_BASE <= int(uid) < identity.UID_BASE + identity.UID_COUNT
    )
    assert (caps, no_new_privs) == ("0000000000000000", "1")


@needs_engine
def test_program_cannot_touch_the_supervisor(backend):
    result = run(
        backend,
        """
        import ctypes, os, signal
        for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getppid(), sig)  # the parent is the supervisor, PID 1
        libc = ctypes.CDLL(None, use_errno=True)
        print(os.getppid(), libc.ptrace(16, 1, 0, 0))  # PTRACE_ATTACH
        try:
            open("/proc/1/environ").read()
        except PermissionError:
            print("environ hidden")
        """,
    )
    assert result.status == "ok", result
    assert result.stdout.splitlines() == ["1 -1", "environ hidden"]
    again = run(backend, "print('still here')")
    assert again.status == "ok" and again.extra["container_id"] == result.extra["container_id"]


@needs_engine
def test_a_dead_container_is_replaced(backend):
    first = run(backend, "print(1)")
    backend._client.api.remove_container(first.extra["container_id"], force=True)
    second = run(backend, "print(2)")
    assert second.status == "ok", second
    assert second.stdout == "2\n"
    assert second.extra["container_id"] != first.extra["container_id"]
    assert first.extra["container_id"] not in backend.container_ids()


@needs_engine
def test_host_side_backstop_discards_an_unresponsive_container(backend, monkeypatch):
    from sdpo_envs.sandbox.docker import backend as docker_backend

    # Pretend the supervisor overran: the backstop fires before its own wall limit does.
    # (The host allows STARVE_FACTOR times the wall clock, which a starved tree may take.)
    monkeypatch.setattr(docker_backend, "BACKSTOP_GRACE_S", 0.5 - docker_backend.STARVE_FACTOR * 5)
    result = run(backend, "import time; time.sleep(30)", limits=Limits(cpu_s=1, wall_s=5, memory_mb=256))
    assert result.status == "sandbox_error", result
    assert "backstop" in result.detail
    monkeypatch.undo()
    assert run(backend, "print('ok')").status == "ok"


@needs_engine
def test_run_python_end_to_end():
    result = run_python(
        "import sys, helper\nprint(helper.twice(sys.stdin.read().strip()))",
        stdin="ab",
        backend="docker",
        files={"helper.py": "def twice(s):\n    return s * 2\n"},
    )
    assert result.status == "ok", result
    assert result.stdout == "abab\n"
    assert result.exit_code == 0
    assert result.cpu_s >= 0 and result.wall_s >= 0
    assert result.isolation.backend == "docker"
    assert "network: none" in result.isolation.enforced


@needs_engine
def test_missing_executable_is_a_runtime_error(backend):
    result = backend.run(["/usr/bin/no-such-program"], limits=FAST)
    assert result.status == "runtime_error", result
    assert result.exit_code == 127


@needs_engine
def test_invalid_file_names_are_rejected(backend):
    with pytest.raises(ValueError):
        backend.run([backend.python, "-c", "pass"], files={"../escape.py": ""}, limits=FAST)


@needs_engine
def test_concurrent_runs_share_a_bounded_pool(backend):
    def one(i: int):
        return run(backend, f"import sys; print(sys.stdin.read() * {i})", stdin="x")

    with cf.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(12)))
    assert [r.status for r in results] == ["ok"] * 12
    assert [r.stdout for r in results] == ["x" * i + "\n" for i in range(12)]
    assert len({r.extra["container_id"] for r in results}) <= backend.pool_size
    assert len(backend.container_ids()) <= backend.pool_size


@needs_engine
def test_close_removes_containers_and_orphans_are_collected():
    first = DockerBackend(pool_size=1)
    api = first._client.api
    assert run(first, "pass").status == "ok"
    ids = first.container_ids()
    assert len(ids) == 1
    first.close()
    assert api.containers(all=True, filters={"id": ids[0]}) == []

    # A container whose owner process is gone is removed by the next backend.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = api.create_container(
        first.image,
        command=["/usr/bin/sleep", "600"],
        labels={LABEL: "1", OWNER_LABEL: f"{socket.gethostname()}:{dead.pid}"},
        host_config=api.create_host_config(
            network_mode="none", binds={"/usr": {"bind": "/usr", "mode": "ro"}}
        ),
    )["Id"]
    try:
        second = DockerBackend(pool_size=1)
        second.close()
        assert api.containers(all=True, filters={"id": orphan}) == []
    finally:
        if api.containers(all=True, filters={"id": orphan}):
            api.remove_container(orphan, force=True)


_READ_QUOTA = """
for quota, period in (("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
                      ("/sys/fs/cgroup/cpu.max", None)):
    try:
        words = open(quota).read().split() + ([open(period).read().strip()] if period else [])
    except OSError:
        continue
    print(int(words[0]) / int(words[1]))
    break
else:
    print("unreadable")
"""


@needs_engine
def test_each_container_gets_the_runs_cpu_quota(backend):
    half = run(backend, _READ_QUOTA, limits=Limits(cpu_s=1.0, wall_s=5.0, memory_mb=256, cpus=0.5))
    one = run(backend, _READ_QUOTA, limits=Limits(cpu_s=1.0, wall_s=5.0, memory_mb=256, cpus=1.0))
    assert half.status == one.status == "ok", (half, one)
    if "unreadable" in half.stdout:
        pytest.skip("the container cannot read its own cpu controller here")
    assert float(half.stdout) == 0.5 and float(one.stdout) == 1.0
    assert half.extra["container_id"] != one.extra["container_id"]  # never shared across quotas
    assert "cgroup cpu quota 0.5 CPU (container, whole tree)" in half.isolation.enforced
    assert any(item.startswith("nice 10") for item in half.isolation.enforced)


@needs_engine
def test_backend_cpus_caps_the_quota():
    capped = DockerBackend(pool_size=1, cpus=0.25)
    try:
        result = run(capped, _READ_QUOTA, limits=Limits(cpu_s=1.0, wall_s=5.0, memory_mb=256, cpus=2.0))
    finally:
        capped.close()
    assert result.status == "ok", result
    if "unreadable" not in result.stdout:
        assert float(result.stdout) == 0.25
    with pytest.raises(ValueError):
        DockerBackend(pool_size=1, cpus=0)
