"""PID 1 of a warm container of the ``docker`` sandbox backend.

This package is not imported by ``sdpo_envs``: ``image.py`` copies it into the sandbox
image as ``/sdpo/supervisor/`` and every warm container runs it as its only long-lived
process (``image.SUPERVISOR_COMMAND``, a uid of its own per container). It uses the standard library only and
must stay compatible with whatever ``/usr/bin/python3`` the Docker host has (Python 3.8+).

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

from .cleanup import SCRATCH, cleanup
from .counters import (
    CPU_FILE,
    OOM_FILE,
    Usage,
    cgroup_cpu_s,
    cores,
    cpu_quota,
    kill_all,
    oom_kills,
    procfs_tree_cpu_s,
    self_cpu_s,
    stretched_deadline,
)

MAGIC = b"SBX1"
# The tree's CPU is read every POLL_S, and, as it nears its limit, after half the time it
# could take to reach it on every core at once (never more often than POLL_MIN_S).
POLL_S = 0.05
POLL_MIN_S = 0.005
# The program and all it starts run at this nice value under SCHED_IDLE, and RLIMIT_NICE 0
# (no CAP_SYS_NICE) keeps them there. This process shares the container's group with the
# program: nice alone left it queued behind 40 busy threads for up to 0.6 s of the tree's
# CPU, while a waking ordinary task preempts an idle-policy one at once.
PROGRAM_NICE = 10
PROGRAM_POLICY = "SCHED_IDLE"
DRAIN_S = 2.0
MIB = 1 << 20

PR_SET_DUMPABLE = 4

_libc = ctypes.CDLL(None, use_errno=True)


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
        os.sched_setscheduler(0, getattr(os, PROGRAM_POLICY), os.sched_param(0))
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
    usage = Usage()
    result = {"exit": None, "reason": None, "oom": None, "exec_error": None, "setup_error": None}
    out, err = bytearray(), bytearray()
    try:
        _setup(request["files"], blobs)
    except Exception as exc:
        result["setup_error"] = f"{type(exc).__name__}: {exc}"
        result["stale"] = isinstance(exc, FileExistsError)
        return result, usage, out, err, 0.0

    oom_before = oom_kills()
    cgroup_cpu0 = cgroup_cpu_s()
    self_cpu0 = self_cpu_s()

    def tree_cpu_s():
        if cgroup_cpu0 is not None:
            now = cgroup_cpu_s()
            if now is not None:
                return (now - cgroup_cpu0) - (self_cpu_s() - self_cpu0)
        return usage.cpu_s + procfs_tree_cpu_s()

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
    n_cores = cores()
    poll_s = POLL_S
    drain_until = None
    try:
        while True:
            usage.reap()
            now = time.monotonic()
            if usage.main_status is not None and drain_until is None:
                kill_all()  # the program is done: whatever it left behind goes now
                drain_until = now + DRAIN_S
            if drain_until is not None and (not buffers or now >= drain_until):
                break
            if result["reason"] is None and usage.main_status is None:
                used = tree_cpu_s()
                later = stretched_deadline(started, float(limits["wall_s"]), now) if now >= deadline else 0.0
                if isinstance(later, float) and later > 0.0:
                    deadline = later  # neighbours kept the tree from a CPU: not its time
                elif now >= deadline:
                    result["reason"] = "starved" if later == "starved" else "wall"
                    kill_all()
                elif used > cpu_limit:
                    result["reason"] = "cpu"
                    kill_all()
                else:
                    poll_s = min(POLL_S, max(POLL_MIN_S, (cpu_limit - used) / n_cores / 2))
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
                        kill_all()
                else:
                    buffer += chunk
    finally:
        selector.close()
        for fd in buffers:
            os.close(fd)
    kill_all()
    usage.reap(block_s=1.0)
    oom_after = oom_kills()
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


def _handle(request, wake_r):
    blobs = [_read_exact(0, size) for _name, size, _mode in request["files"]]
    stdin_data = _read_exact(0, request["stdin_len"])
    result, usage, out, err, wall = _run(request, blobs, stdin_data, wake_r)
    del blobs, stdin_data
    problems = cleanup(usage)
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
            "cpu_quota": cpu_quota(),
            "program_nice": PROGRAM_NICE,
            "program_policy": PROGRAM_POLICY,
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
    kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
