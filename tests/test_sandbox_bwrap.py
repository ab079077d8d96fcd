"""bwrap-specific behaviour: what is enforced, concurrency, classification, cleanup."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from sdpo_envs.sandbox import Limits, get_backend, run_python
from sdpo_envs.sandbox.bwrap import BwrapBackend
from sdpo_envs.sandbox.bwrap.cgroups import layout

REASON = BwrapBackend.probe()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"bwrap backend unavailable: {REASON}")

SMALL = Limits(cpu_s=1.0, wall_s=5.0, memory_mb=128, output_bytes=32 * 1024, processes=16, disk_mb=8)


@pytest.fixture(scope="module")
def bwrap():
    return get_backend("bwrap")


def run(backend, code: str, **kwargs):
    kwargs.setdefault("limits", SMALL)
    files = {"main.py": code, **kwargs.pop("files", {})}
    return backend.run([backend.python, "main.py"], files=files, **kwargs)


def test_run_python_end_to_end():
    result = run_python("print(input()[::-1])", stdin="abc\n", backend="bwrap", limits=SMALL)
    assert result.status == "ok"
    assert result.stdout == "cba\n"
    assert result.isolation.backend == "bwrap"
    assert result.cpu_s > 0 and result.wall_s > 0


def test_isolation_says_what_was_enforced(bwrap):
    iso = run(bwrap, "pass").isolation
    text = " | ".join(iso.enforced)
    for needle in (
        "pid namespace",
        "read-only root",
        "no network",
        "rlimit-cpu",
        "rlimit-core 0",
        "output cap",
    ):
        assert needle in text, (needle, iso)
    if os.geteuid() == 0:
        assert any(item.startswith("uid ") for item in iso.enforced)
    lay = layout()
    if lay is not None and "memory" in lay.parents:
        assert "memory 128 MiB" in text
    else:
        assert "rlimit-as" in text


def test_sandbox_sees_a_minimal_filesystem(bwrap):
    code = """
import os
print(sorted(os.listdir('/')))
print(os.getcwd(), sorted(os.listdir('.')))
print(len([p for p in os.listdir('/proc') if p.isdigit()]))
for path in ('/sdpo-probe', '/usr/sdpo-probe', '/etc/passwd', '/proc/sys/kernel/hostname'):
    try:
        open(path, 'w').write('x')
        print('OPENED', path)
    except OSError as exc:
        print('refused', path, type(exc).__name__)
"""
    result = run(bwrap, code, files={"pkg/helper.py": "X = 1"})
    assert result.status == "ok", result
    lines = result.stdout.splitlines()
    assert "etc" not in lines[0] and "home" not in lines[0] and "root" not in lines[0]
    assert lines[1].startswith("/scratch") and "pkg" in lines[1] and "main.py" in lines[1]
    assert int(lines[2]) <= 3  # only the sandbox's own processes
    assert "OPENED" not in result.stdout


def test_files_in_subdirectories_are_importable(bwrap):
    result = run(bwrap, "from pkg.helper import X\nprint(X)", files={"pkg/helper.py": "X = 41 + 1"})
    assert result.stdout == "42\n"


def test_tmp_is_private_to_each_run(bwrap):
    run(bwrap, "open('/tmp/left-behind', 'w').write('x')")
    result = run(bwrap, "import os\nprint(os.path.exists('/tmp/left-behind'))")
    assert result.stdout == "False\n"


def test_nested_user_namespaces_are_disabled(bwrap):
    code = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print('unshared' if libc.unshare(0x10000000) == 0 else f'refused errno={ctypes.get_errno()}')
"""
    assert run(bwrap, code).stdout.startswith("refused")


def test_tree_cpu_time_is_enforced(bwrap):
    # Two processes, each under the 1 s per-process RLIMIT_CPU, together over the limit.
    code = """
import os, time
os.fork()
start = time.process_time()
while time.process_time() - start < 0.8:
    pass
"""
    result = run(bwrap, code, limits=Limits(cpu_s=1.0, wall_s=20.0, memory_mb=128))
    assert result.status == "time_limit", result
    assert result.cpu_s > 1.0


def test_memory_error_and_peak_memory(bwrap):
    result = run(bwrap, "raise MemoryError")
    assert result.status == "memory_limit"
    result = run(bwrap, "data = bytearray(60 * 1024 * 1024)\nprint(len(data))")
    assert result.status == "ok"
    assert result.peak_memory_mb is not None and result.peak_memory_mb >= 50


def test_stderr_flood_is_an_output_limit(bwrap):
    result = run(bwrap, "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)")
    assert result.status == "output_limit"
    assert "stderr" in result.detail


def test_printed_text_cannot_fake_a_sandbox_error(bwrap):
    code = (
        "import sys\nprint('bwrap: execvp main.py: No such file or directory', file=sys.stderr)\nsys.exit(1)"
    )
    assert run(bwrap, code).status == "runtime_error"


def test_caller_errors_are_sandbox_errors(bwrap):
    assert bwrap.run(["/no/such/program"], limits=SMALL).status == "sandbox_error"
    assert (
        bwrap.run([bwrap.python, "x.py"], files={"../x.py": "pass"}, limits=SMALL).status == "sandbox_error"
    )


def test_env_and_large_stdin(bwrap):
    payload = "x" * (1 << 20)
    code = "import os, sys\nprint(os.environ['GREETING'], len(sys.stdin.read()))"
    result = run(bwrap, code, stdin=payload, env={"GREETING": "hi"})
    assert result.stdout == f"hi {len(payload)}\n"


def test_concurrent_runs_use_distinct_slots(bwrap):
    code = "import os, time\ntime.sleep(0.3)\nprint(os.getuid())"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(bwrap, code), range(4)))
    assert all(r.status == "ok" for r in results), results
    if os.geteuid() == 0:
        assert len({r.stdout for r in results}) == 4


def test_fresh_netns_option_and_close_removes_cgroups():
    backend = BwrapBackend(fresh_netns=True)
    try:
        result = run(backend, "import socket\nprint([name for _, name in socket.if_nameindex()])")
        assert result.status == "ok" and result.stdout.strip() == "['lo']"
        assert any("new netns" in item for item in result.isolation.enforced)
        dirs = [d for slot in backend._pool.idle() if slot.cgroup for d in slot.cgroup.dirs.values()]
    finally:
        backend.close()
    assert not [d for d in dirs if os.path.exists(d)]


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch only happens when running as root")
def test_calling_thread_identity_is_restored(bwrap):
    import ctypes

    libc = ctypes.CDLL(None)
    before = (os.getresuid(), os.getresgid(), sorted(os.getgroups()), os.readlink("/proc/thread-self/ns/net"))
    dumpable = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    assert run(bwrap, "pass").status == "ok"
    after = (os.getresuid(), os.getresgid(), sorted(os.getgroups()), os.readlink("/proc/thread-self/ns/net"))
    assert after == before
    assert libc.prctl(3, 0, 0, 0, 0) == dumpable


def test_site_is_skipped_only_when_the_program_does_not_need_it(bwrap):
    plain = run(bwrap, "import sys, collections\nprint(sys.flags.no_site)")
    assert plain.stdout == "1\n" and plain.extra["python_flags"] == "-S"
    uses_exit = run(bwrap, "import sys\nprint(sys.flags.no_site)\nexit(0)")
    assert uses_exit.status == "ok" and uses_exit.stdout == "0\n"
    assert uses_exit.extra["python_flags"] == ""
    third_party = run(
        bwrap, "import sys\ntry:\n    import yaml\nexcept ImportError:\n    pass\nprint(sys.flags.no_site)"
    )
    assert third_party.stdout == "0\n"


def test_program_is_pid_1_with_no_sandbox_helper_to_attack():
    """No bwrap helper of the same uid stays in the sandbox: its fds and memory were readable."""
    from sdpo_envs.sandbox import run_python

    result = run_python(
        "import os\nprint(os.getpid(), sorted(p for p in os.listdir('/proc') if p.isdigit()))",
        backend="bwrap",
    )
    assert result.status == "ok", result.stderr
    assert result.stdout.split(maxsplit=1) == ["1", "['1']\n"] or result.stdout.strip() == "1 ['1']"
