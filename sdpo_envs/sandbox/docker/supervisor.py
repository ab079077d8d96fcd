"""PID 1 of a warm container of the ``docker`` sandbox backend.

This file is not imported by ``sdpo_envs``: ``docker_image`` copies it into the sandbox
image as ``/sdpo/supervisor.py`` and every warm container runs it as its only long-lived
process (``/usr/bin/python3 -I -S /sdpo/supervisor.py``, uid 65534). It uses the standard
library only and must stay compatible with whatever ``/usr/bin/python3`` the Docker host has
(Python 3.8+).

Why PID 1 and not ``docker exec`` per run: the init process of a PID namespace receives,
from inside that namespace, only the signals it installed a handler for (here only
``SIGCHLD``), and this process makes itself non-dumpable, so the program it runs (same uid)
can neither kill, stop, ptrace nor read it; it is the subreaper of every orphan, and
``kill(-1, SIGKILL)`` from it reaches every other process in the container. Being
long-lived, it also saves a ``docker exec`` (~50 ms) and an interpreter start per run.

Protocol on the container's attached stdio (the host holds one attach connection per
container, opened with ``StdinOnce`` so that stdin closes, and this process exits, when the
host goes away):

* container -> host: ``MAGIC`` + u32 length + JSON; first a ``{"ready": ...}`` hello, then
  one ``{"result": ...}`` per request, followed by the program's raw stdout and stderr bytes
  (``out_len`` and ``err_len`` of them).
* host -> container: ``MAGIC`` + u32 length + JSON request, followed by the blobs it lists
  (each file's bytes, then the stdin bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import resource
import selectors
import signal
import struct
import sys
import time

MAGIC = b"SBX1"
SCRATCH = "/work/run"  # a tmpfs of its own; /work itself is read-only
WIPE_DIRS = (SCRATCH, "/tmp", "/dev/shm", "/dev/mqueue")
# The tree's CPU is read every POLL_S, and, as it nears its limit, after half the time it
# could take to reach it on every core at once (never more often than POLL_MIN_S).
POLL_S = 0.05
POLL_MIN_S = 0.005
# The program and all it starts run at this nice value, and RLIMIT_NICE 0 (no CAP_SYS_NICE)
# keeps it there: inside the container's CPU quota this process (nice 0) keeps its share.
PROGRAM_NICE = 10
DRAIN_S = 2.0
MIB = 1 << 20

PR_SET_DUMPABLE = 4
IPC_RMID = 0

_libc = ctypes.CDLL(None, use_errno=True)


def _first_existing(paths):
    for path in paths:
        try:
            with open(path) as handle:
                handle.read()
            return path
        except OSError:
            continue
    return None


# cgroup v1 (docker mounts the container's own cgroup at these paths) or v2 (cgroupns).
CPU_FILE = _first_existing(
    (
        "/sys/fs/cgroup/cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu.stat",
    )
)
OOM_FILE = _first_existing(("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"))
QUOTA_FILES = (
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"),
    ("/sys/fs/cgroup/cpu.max", None),
)


def _cpu_quota():
    """The container's CPU bandwidth quota in CPUs, as the kernel holds it (None: none)."""
    for quota_file, period_file in QUOTA_FILES:
        try:
            with open(quota_file) as handle:
                words = handle.read().split()
            if period_file is not None:
                with open(period_file) as handle:
                    words.append(handle.read().strip())
        except OSError:
            continue
        if len(words) == 2 and words[0] not in ("max", "-1") and int(words[1]) > 0:
            return int(words[0]) / int(words[1])
        return None
    return None


def _cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cgroup_cpu_s():
    """CPU seconds of every process in the container so far, or None when unreadable."""
    if CPU_FILE is None:
        return None
    try:
        with open(CPU_FILE) as handle:
            text = handle.read()
    except OSError:
        return None
    if CPU_FILE.endswith("cpu.stat"):
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None
    return int(text.strip()) / 1e9


def _oom_kills():
    if OOM_FILE is None:
        return None
    try:
        with open(OOM_FILE) as handle:
            for line in handle:
                key, _, value = line.strip().partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def _self_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _other_pids():
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def _procfs_tree_cpu_s():
    """Fallback when no cgroup CPU file is readable: CPU of the live processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _other_pids():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is the state (field 3); utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(value) for value in fields[11:15])
    return total / tick


def _kill_all():
    """SIGKILL every process in the container except this one (PID 1)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)


class _Usage:
    """Resource usage of one run, summed over every process it reaped."""

    def __init__(self):
        self.cpu_s = 0.0
        self.maxrss_kb = 0
        self.main_status = None
        self.main_pid = None
        self.main_exit_at = None

    def reap(self, block_s=0.0):
        """Reap every finished child (waiting up to ``block_s`` for the last ones)."""
        deadline = time.monotonic() + block_s
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
                continue
            self.cpu_s += usage.ru_utime + usage.ru_stime
            self.maxrss_kb = max(self.maxrss_kb, usage.ru_maxrss)
            if pid == self.main_pid:
                self.main_status = status
                self.main_exit_at = time.monotonic()


def _read_exact(fd, size):
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _send(message, *blobs):
    body = json.dumps(message).encode()
    _write_all(1, MAGIC + struct.pack(">I", len(body)) + body)
    for blob in blobs:
        if blob:
            _write_all(1, blob)


def _safe_path(relative):
    parts = relative.split("/")
    if relative.startswith("/") or not relative or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"unsafe file name {relative!r}")
    return os.path.join(SCRATCH, *parts)


def _setup(files, blobs):
    if os.listdir(SCRATCH):
        raise FileExistsError(f"{SCRATCH} is not empty: a previous run left files behind")
    for (name, _size, mode), data in zip(files, blobs):
        path = _safe_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)


def _stdin_fd(data):
    if not data:
        return os.open("/dev/null", os.O_RDONLY)
    try:
        fd = os.memfd_create("stdin")
    except (AttributeError, OSError):
        fd = os.open("/tmp", os.O_RDWR | os.O_TMPFILE, 0o600)
    _write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _child(argv, env, limits, stdin_fd, out_w, err_w, report_w):
    """In the forked child: reset signals, apply rlimits, exec. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setsid()
        # Lowered before the rlimit that forbids raising it again; inherited by everything.
        os.setpriority(os.PRIO_PROCESS, 0, PROGRAM_NICE)
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        try:
            with open("/proc/self/oom_score_adj", "w") as handle:  # the OOM killer picks the program first
                handle.write("1000")
        except OSError:
            pass
        cpu = math.ceil(limits["cpu_s"]) + 1  # the supervisor's tree-wide poll normally fires first
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        address_space = limits["address_space_mb"] * MIB
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        file_size = limits["disk_mb"] * MIB
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.chdir(SCRATCH)
        os.umask(0o022)
        os.execvpe(argv[0], argv, env)
    except BaseException as exc:
        try:
            os.write(report_w, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(127)


def _run(request, blobs, stdin_data, wake_r):
    limits = request["limits"]
    usage = _Usage()
    result = {"exit": None, "reason": None, "oom": None, "exec_error": None, "setup_error": None}
    out, err = bytearray(), bytearray()
    try:
        _setup(request["files"], blobs)
    except Exception as exc:
        result["setup_error"] = f"{type(exc).__name__}: {exc}"
        result["stale"] = isinstance(exc, FileExistsError)
        return result, usage, out, err, 0.0

    oom_before = _oom_kills()
    cgroup_cpu0 = _cgroup_cpu_s()
    self_cpu0 = _self_cpu_s()

    def tree_cpu_s():
        if cgroup_cpu0 is not None:
            now = _cgroup_cpu_s()
            if now is not None:
                return (now - cgroup_cpu0) - (_self_cpu_s() - self_cpu0)
        return usage.cpu_s + _procfs_tree_cpu_s()

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe()
    stdin_fd = _stdin_fd(stdin_data)
    env = dict(request["env"])
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(request["argv"], env, limits, stdin_fd, out_w, err_w, report_w)
    usage.main_pid = pid
    for fd in (out_w, err_w, report_w, stdin_fd):
        os.close(fd)
    exec_error = b""
    while True:
        chunk = os.read(report_r, 4096)  # EOF once exec succeeded (the pipe is close-on-exec)
        if not chunk:
            break
        exec_error += chunk
    os.close(report_r)
    if exec_error:
        result["exec_error"] = exec_error.decode(errors="replace")

    cap = int(request["limits"]["output_bytes"])
    buffers = {out_r: out, err_r: err}
    names = {out_r: "stdout", err_r: "stderr"}
    totals = {"stdout": 0, "stderr": 0}
    selector = selectors.DefaultSelector()
    for fd in (out_r, err_r, wake_r):
        selector.register(fd, selectors.EVENT_READ)
    deadline = started + float(limits["wall_s"])
    cpu_limit = float(limits["cpu_s"])
    cores = _cores()
    poll_s = POLL_S
    drain_until = None
    try:
        while True:
            usage.reap()
            now = time.monotonic()
            if usage.main_status is not None and drain_until is None:
                _kill_all()  # the program is done: whatever it left behind goes now
                drain_until = now + DRAIN_S
            if drain_until is not None and (not buffers or now >= drain_until):
                break
            if result["reason"] is None and usage.main_status is None:
                used = tree_cpu_s()
                if now >= deadline:
                    result["reason"] = "wall"
                    _kill_all()
                elif used > cpu_limit:
                    result["reason"] = "cpu"
                    _kill_all()
                else:
                    poll_s = min(POLL_S, max(POLL_MIN_S, (cpu_limit - used) / cores / 2))
            if drain_until is not None:
                timeout = max(0.0, drain_until - now)
            else:
                timeout = max(0.0, min(poll_s, deadline - now))
            for key, _ in selector.select(timeout):
                fd = key.fd
                if fd == wake_r:
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    selector.unregister(fd)
                    os.close(fd)
                    del buffers[fd]
                    continue
                buffer = buffers[fd]
                totals[names[fd]] += len(chunk)
                room = cap - len(buffer)
                if len(chunk) > room:
                    buffer += chunk[: max(0, room)]
                    if result["reason"] is None:
                        result["reason"] = "output"
                        result["overflow"] = names[fd]
                        _kill_all()
                else:
                    buffer += chunk
    finally:
        selector.close()
        for fd in buffers:
            os.close(fd)
    _kill_all()
    usage.reap(block_s=1.0)
    oom_after = _oom_kills()
    if oom_before is not None and oom_after is not None:
        result["oom"] = oom_after > oom_before
    status = usage.main_status
    if status is not None:
        result["exit"] = (
            os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        )
    result["stdout_bytes"], result["stderr_bytes"] = totals["stdout"], totals["stderr"]
    end = usage.main_exit_at or time.monotonic()
    return result, usage, out, err, end - started


def _remove_ipc():
    for kind, remove in (
        ("shm", lambda ident: _libc.shmctl(ident, IPC_RMID, None)),
        ("msg", lambda ident: _libc.msgctl(ident, IPC_RMID, None)),
        ("sem", lambda ident: _libc.semctl(ident, 0, IPC_RMID)),
    ):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1:
                remove(int(fields[1]))


def _wipe(directory):
    """Delete everything under ``directory`` (not itself), even dirs the program made unreadable."""
    stack, seen = [directory], []
    while stack:
        path = stack.pop()
        if path != directory:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700)
        seen.append(path)
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            os.unlink(entry.path)
                    except OSError:
                        pass
        except OSError:
            pass
    for path in reversed(seen[1:]):  # children were appended after their parents
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _cleanup(usage):
    """Kill and reap everything, wipe every writable place; return what could not be undone."""
    problems = []
    for _ in range(100):
        _kill_all()
        usage.reap(block_s=0.02)
        if not _other_pids():
            break
    else:
        problems.append(f"processes survived: {_other_pids()[:10]}")
    try:
        _remove_ipc()
    except Exception as exc:
        problems.append(f"ipc: {exc}")
    try:
        os.chmod(SCRATCH, 0o755)  # the program owns it and may have locked it
    except OSError as exc:
        problems.append(f"chmod {SCRATCH}: {exc}")
    for directory in WIPE_DIRS:
        _wipe(directory)
        try:
            left = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{directory}: {exc}")
            continue
        if left:
            problems.append(f"{directory} not empty: {left[:5]}")
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                if len(handle.read().splitlines()) > 1:
                    problems.append(f"SysV {kind} objects left")
        except OSError:
            pass
    return problems


def _handle(request, wake_r):
    blobs = [_read_exact(0, size) for _name, size, _mode in request["files"]]
    stdin_data = _read_exact(0, request["stdin_len"])
    result, usage, out, err, wall = _run(request, blobs, stdin_data, wake_r)
    del blobs, stdin_data
    problems = _cleanup(usage)
    result.update(
        {
            "id": request.get("id"),
            "wall_s": wall,
            "cpu_s": usage.cpu_s,
            "maxrss_kb": usage.maxrss_kb,
            "clean": not problems,
            "problems": problems,
            "out_len": len(out),
            "err_len": len(err),
        }
    )
    _send({"result": result}, bytes(out), bytes(err))


def main():
    if _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    # As PID 1, a signal without a handler is dropped; keep SIGINT that way (Python installs one).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    _send(
        {
            "ready": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "python": sys.version.split()[0],
            "cpu_file": CPU_FILE,
            "oom_file": OOM_FILE,
            "cpu_quota": _cpu_quota(),
            "program_nice": PROGRAM_NICE,
        }
    )
    while True:
        try:
            head = _read_exact(0, len(MAGIC) + 4)
        except EOFError:
            break  # the host went away: the container exits and docker removes it
        if head[: len(MAGIC)] != MAGIC:
            sys.stderr.write("supervisor: bad request framing\n")
            return 2
        (length,) = struct.unpack(">I", head[len(MAGIC) :])
        request = json.loads(_read_exact(0, length))
        _handle(request, wake_r)
    _kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
