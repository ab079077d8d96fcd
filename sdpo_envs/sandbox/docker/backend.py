"""The ``docker`` sandbox backend: warm, locked-down containers on a real Docker engine.

How a run goes:

* The engine is reached through the Docker SDK (``docker.from_env()``, so ``DOCKER_HOST``
  and the TLS variables are honoured). The SDK is imported lazily: ``sdpo_envs`` imports
  without it.
* The image is built locally, never pulled: :mod:`.docker_image` generates a tiny root
  filesystem and ``docker import``\\ s it, tagged with a hash of its content. The host's
  ``/usr`` is bind-mounted read-only at run time, so ``/usr/bin/python3`` inside is the
  host's interpreter (the engine must run on this machine, or on one with the same /usr).
* A small pool of warm containers is reused between runs. Each container runs with
  ``network_mode=none``, a read-only root, uid 65534, every capability dropped,
  ``no-new-privileges``, the engine's default seccomp profile, a memory cgroup without
  swap, a pids cgroup, a CPU quota of ``Limits.cpus`` (containers are reused only for runs
  with the same quota), and size-limited tmpfs for the scratch dir ``/work/run``, ``/tmp``
  and ``/dev/shm`` (nothing else is writable). Its only long-lived process (PID 1) is
  :mod:`.docker_supervisor`, which the host talks to over the container's attached stdio
  (one connection per container, no ``docker exec`` per run).
* Per run, the supervisor writes the files into the empty ``/work/run``, forks the program
  with its own rlimits (CPU, address space, file size, no core, no raising its priority),
  nice 10 and ``oom_score_adj`` 1000, polls the container's cgroup CPU counter to enforce
  the CPU limit of the whole process tree (every 50 ms, more often near the limit; the
  kernel's CPU quota bounds how fast the tree can get there and, with the program niced,
  leaves the supervisor its share of that quota), enforces the wall clock and the output
  caps, then kills every other process in the container, reaps them (summing their
  rusage), wipes ``/work/run``, ``/tmp``, ``/dev/shm``, POSIX message queues and SysV IPC
  objects, verifies that nothing is left, and reports. The host also keeps a wall-clock
  backstop of its own.
* A container whose cleanup was not verified, whose supervisor stopped answering, or that
  died is removed and replaced. Containers are labelled with their owner (host and pid):
  they remove themselves when the owning process disconnects (``StdinOnce`` plus
  ``auto_remove``), :meth:`DockerBackend.close` and an ``atexit`` hook remove them, and a
  new backend removes those whose owner process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import struct
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import MIN_CPUS, ExecResult, ExecStatus, Isolation, Limits, SandboxBackend, SandboxUnavailable
from ..capture import classify, decode_output
from ..files import as_bytes, normalize_files
from .image import SANDBOX_GID, SANDBOX_PYTHON, SANDBOX_UID, SUPERVISOR_PATH, ensure_image

logger = logging.getLogger(__name__)

MAGIC = b"SBX1"  # must match docker_supervisor.MAGIC
LABEL = "org.sdpo-gym.sandbox"
OWNER_LABEL = "org.sdpo-gym.owner"
MIB = 1 << 20
SUPERVISOR_MB = 32  # memory cgroup headroom for the supervisor (PID 1) on top of Limits.memory_mb
TMPFS_INODES = 16384
START_TIMEOUT_S = 60.0
BACKSTOP_GRACE_S = 15.0  # setup + cleanup allowance beyond Limits.wall_s before the host gives up
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work/run",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}
SDK_MISSING = "the Docker SDK for Python is not installed: pip install 'sdpo-gym[docker]'"


class _SandboxFailure(Exception):
    """The engine, the container or its supervisor failed (not the program)."""


class _Backstop(_SandboxFailure):
    """The supervisor did not answer within the host-side wall-clock backstop."""


def _default_pool_size() -> int:
    configured = os.environ.get("SDPO_DOCKER_POOL_SIZE")
    if configured:
        return max(1, int(configured))
    return max(2, os.cpu_count() or 1)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class _Profile:
    """The container-level part of ``Limits``: containers are reused only for equal profiles."""

    memory_mb: int
    processes: int
    disk_mb: int
    cpus: float  # the container's CPU quota (Limits.cpus, capped by the backend and the host)

    @classmethod
    def of(cls, limits: Limits, max_cpus: float) -> _Profile:
        cpus = round(min(float(limits.cpus), max_cpus), 2)  # Docker's nano_cpus step is 0.01 CPU
        return cls(int(limits.memory_mb), int(limits.processes), int(limits.disk_mb), max(MIN_CPUS, cpus))

    @property
    def cgroup_memory_mb(self) -> int:
        return self.memory_mb + SUPERVISOR_MB

    @property
    def pids(self) -> int:
        return self.processes + 1  # + the supervisor

    @property
    def address_space_mb(self) -> int:
        # Generous on purpose (thread stacks and malloc arenas reserve address space): the
        # cgroup is the real cap; this makes huge single allocations fail fast with MemoryError.
        return 2 * self.memory_mb + 256


class _Channel:
    """The host end of a container's attached stdio (Docker's multiplexed stream format)."""

    STDERR_KEEP = 64 * 1024

    def __init__(self, sock: Any) -> None:
        self._holder = sock  # keep the SDK's object (and its HTTP response) alive
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._stdout = bytearray()
        self.stderr = bytearray()

    def _recv_exact(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Backstop("the sandbox container did not answer in time")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(min(size, 1 << 20))
            except TimeoutError:
                continue
            except OSError as exc:
                raise _SandboxFailure(f"connection to the sandbox container failed: {_short(exc)}") from exc
            if not chunk:
                detail = self.stderr.decode(errors="replace").strip()[-2000:]
                raise _SandboxFailure(
                    "the sandbox container closed its connection"
                    + (f"; its stderr: {detail}" if detail else "")
                )
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float) -> None:
        header = self._recv_exact(8, deadline)
        stream, length = header[0], struct.unpack(">I", header[4:])[0]
        data = self._recv_exact(length, deadline) if length else b""
        if stream == 2:
            self.stderr += data
            del self.stderr[: -self.STDERR_KEEP]
        else:
            self._stdout += data

    def read(self, size: int, deadline: float) -> bytes:
        while len(self._stdout) < size:
            self._read_frame(deadline)
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def recv_message(self, deadline: float) -> dict:
        head = self.read(len(MAGIC) + 4, deadline)
        if head[: len(MAGIC)] != MAGIC:
            raise _SandboxFailure(f"garbled message from the sandbox supervisor: {head!r}")
        (length,) = struct.unpack(">I", head[len(MAGIC) :])
        return json.loads(self.read(length, deadline))

    def send(self, data: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        self._sock.settimeout(max(0.001, remaining))
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise _SandboxFailure(f"could not send the run to the sandbox container: {_short(exc)}") from exc

    def idle_and_alive(self) -> bool:
        """True when the connection is open and nothing unexpected is waiting on it."""
        if self._stdout:
            return False
        try:
            self._sock.setblocking(False)
            try:
                self._sock.recv(1, socket.MSG_PEEK)  # EOF (b"") or unexpected bytes: unusable
                return False
            finally:
                self._sock.setblocking(True)
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        for obj in (self._sock, self._holder):
            with contextlib.suppress(Exception):
                obj.close()


@dataclass(eq=False)
class _Slot:
    """One warm container."""

    container_id: str
    channel: _Channel
    profile: _Profile
    hello: dict
    runs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_LIVE: weakref.WeakSet[DockerBackend] = weakref.WeakSet()


def _close_all() -> None:
    for backend in list(_LIVE):
        if backend._pid != os.getpid():  # a fork()ed child must not remove its parent's containers
            continue
        try:
            backend.close()
        except Exception:
            logger.debug("closing a docker sandbox backend at exit failed", exc_info=True)


atexit.register(_close_all)


class DockerBackend(SandboxBackend):
    """Run programs in a pool of warm, locked-down containers (see the module docstring).

    ``pool_size`` bounds the number of containers (and so of concurrent runs; further
    callers wait); it defaults to ``$SDPO_DOCKER_POOL_SIZE`` or max(2, CPU count). Each
    container's CPU quota is the run's ``Limits.cpus``, at most ``cpus`` when that is given
    and at most the engine's CPU count (Docker refuses more). ``run`` is thread-safe.

    ``ExecResult.exit_code`` is the program's exit status, 128+N when signal N killed it,
    ``None`` when the sandbox killed it for a limit (as the bwrap backend reports them).
    ``cpu_s`` sums the rusage of every process of the run; ``peak_memory_mb`` is the largest
    single-process RSS. ``extra`` has the ``container_id``, ``stdout_bytes`` and
    ``stderr_bytes`` (totals, before the cap) and how the numbers were measured.
    """

    name = "docker"
    trusted_isolation = True

    def __init__(
        self, *, pool_size: int | None = None, cpus: float | None = None, client: Any = None
    ) -> None:
        try:
            import docker
        except ImportError as exc:
            raise SandboxUnavailable(SDK_MISSING) from exc
        self._docker = docker
        self.pool_size = int(pool_size or _default_pool_size())
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if cpus is not None and not cpus >= MIN_CPUS:
            raise ValueError(f"cpus must be at least {MIN_CPUS}")
        self.cpus = None if cpus is None else float(cpus)
        try:
            self._client = client or docker.from_env(timeout=60, max_pool_size=self.pool_size + 8)
            version = self._client.version()
            info = self._client.info()
            self.image = ensure_image(self._client)
        except SandboxUnavailable:
            raise
        except Exception as exc:
            raise SandboxUnavailable(f"the Docker engine could not be used: {_short(exc)}") from exc
        self.engine_version = str(version.get("Version", "?"))
        engine_cpus = float(info.get("NCPU") or os.cpu_count() or 1)
        self._max_cpus = min(engine_cpus, self.cpus) if self.cpus is not None else engine_cpus
        self._seccomp = any("seccomp" in str(option) for option in info.get("SecurityOptions") or ())
        self._pid = os.getpid()
        self._owner = f"{socket.gethostname()}:{self._pid}"
        self._cond = threading.Condition()
        self._idle: list[_Slot] = []
        self._slots: set[_Slot] = set()
        self._starting = 0
        self._closed = False
        self._names = itertools.count()
        self._requests = itertools.count()
        self._remove_orphans()
        _LIVE.add(self)

    # ------------------------------------------------------------------ contract

    @classmethod
    def probe(cls) -> str | None:
        try:
            import docker
        except ImportError:
            return SDK_MISSING
        where = (
            os.environ.get("DOCKER_HOST")
            or "unix:///var/run/docker.sock (the default: DOCKER_HOST is not set)"
        )
        try:
            client = docker.from_env(timeout=10)
            try:
                client.ping()
                info = client.info()
            finally:
                client.close()
        except Exception as exc:
            return (
                f"no Docker engine answers at DOCKER_HOST={where} ({_short(exc, 200)}). Start one "
                "(`sudo systemctl start docker`, or `.ci/dockerd.sh start` in this repository and "
                "export the DOCKER_HOST it prints) or point DOCKER_HOST at a running engine"
            )
        if info.get("OSType", "linux") != "linux":
            return f"the Docker engine at {where} runs {info.get('OSType')!r} containers; linux is needed"
        if not os.path.exists(SANDBOX_PYTHON):
            return (
                f"{SANDBOX_PYTHON} does not exist: the docker backend mounts this machine's /usr "
                "read-only into its containers and runs that interpreter"
            )
        return None

    @property
    def python(self) -> str:
        return SANDBOX_PYTHON

    def run(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, str | bytes] | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        limits = limits or Limits()
        started = time.monotonic()
        profile = _Profile.of(limits, self._max_cpus)
        request_id = f"{os.getpid()}-{next(self._requests)}"
        payload = self._payload(request_id, argv, files, stdin, limits, env, profile)
        failure = "no attempt was made"
        for attempt in range(2):
            try:
                slot = self._checkout(profile)
            except _SandboxFailure as exc:
                return self._failed(str(exc), limits, profile, started)
            try:
                reply, out, err = self._transact(slot, payload, request_id, limits)
            except _Backstop as exc:
                self._discard(slot)
                return self._failed(
                    f"host-side backstop: {exc} within {limits.wall_s + BACKSTOP_GRACE_S:.0f} s; "
                    "the container was discarded",
                    limits,
                    profile,
                    started,
                )
            except _SandboxFailure as exc:
                self._discard(slot)
                failure = str(exc)
                logger.warning("docker sandbox attempt %d failed: %s", attempt + 1, failure)
                continue
            if reply.get("clean"):
                self._checkin(slot)
            else:
                logger.warning(
                    "docker sandbox container %s was not left clean (%s); replacing it",
                    slot.container_id[:12],
                    "; ".join(reply.get("problems") or ["?"]),
                )
                self._discard(slot)
            if reply.get("setup_error"):
                failure = f"could not prepare the run's scratch directory: {reply['setup_error']}"
                if reply.get("stale"):
                    continue
                return self._failed(failure, limits, profile, started)
            return self._result(reply, out, err, slot, argv, limits, profile, started)
        return self._failed(failure, limits, profile, started)

    def close(self) -> None:
        """Remove every container of this backend (busy ones as soon as their run returns)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for slot in idle:
            self._destroy(slot)
        _LIVE.discard(self)

    # ------------------------------------------------------------------ introspection

    def container_ids(self) -> list[str]:
        """Ids of this backend's live containers (idle and busy)."""
        with self._cond:
            return sorted(slot.container_id for slot in self._slots)

    def isolation(self, limits: Limits | None = None, hello: Mapping[str, Any] | None = None) -> Isolation:
        """What a run under ``limits`` has enforced (see the module docstring)."""
        limits = limits or Limits()
        profile = _Profile.of(limits, self._max_cpus)
        cgroup_cpu = hello is None or bool(hello.get("cpu_file"))
        # What the kernel holds the container to, as its supervisor read it (None: not started).
        quota = profile.cpus if hello is None else hello.get("cpu_quota")
        nice = 10 if hello is None else hello.get("program_nice")
        enforced = [
            f"docker {self.engine_version} container: own pid, mount, ipc, uts and network namespaces",
            "network: none",
            "read-only root filesystem (host /usr bind-mounted read-only)",
            f"non-root uid {SANDBOX_UID}, all capabilities dropped, no-new-privileges",
        ]
        if self._seccomp:
            enforced.append("seccomp: engine default profile")
        enforced += [
            f"memory: {profile.cgroup_memory_mb} MiB container memory cgroup (memory_mb + {SUPERVISOR_MB} MiB "
            f"supervisor), no swap; RLIMIT_AS {profile.address_space_mb} MiB per process",
            f"processes: pids cgroup of {profile.pids} tasks (processes + the supervisor)",
            f"cpu time: {limits.cpu_s:g} s for the whole process tree ("
            + ("cgroup CPU counter" if cgroup_cpu else "/proc")
            + " polled every 50 ms, more often near the limit) and RLIMIT_CPU per process",
            f"wall clock: {limits.wall_s:g} s, plus a host-side backstop",
            f"output: {limits.output_bytes} bytes per stream",
            f"scratch: {profile.disk_mb} MiB tmpfs /work/run (RLIMIT_FSIZE), private tmpfs /tmp and /dev/shm",
            "after each run every process is killed and scratch, /tmp, /dev/shm and IPC objects are wiped",
        ]
        if quota:
            enforced.append(f"cgroup cpu quota {quota:g} CPU (container, whole tree)")
        if nice:
            enforced.append(f"nice {nice} for the whole tree (inherited; RLIMIT_NICE 0, cannot be undone)")
        missing = [f"user namespace (uid {SANDBOX_UID} inside is uid {SANDBOX_UID} on the host)"]
        if not quota:
            missing.append("cgroup cpu quota (the container's cpu controller shows none)")
        if not nice:
            missing.append("nice (an older supervisor)")
        if not cgroup_cpu:
            missing.append("cgroup CPU accounting (tree CPU polled from /proc instead)")
        return Isolation("docker", enforced=tuple(enforced), missing=tuple(missing))

    # ------------------------------------------------------------------ one run

    def _payload(
        self,
        request_id: str,
        argv: Sequence[str],
        files: Mapping[str, str | bytes] | None,
        stdin: str | bytes,
        limits: Limits,
        env: Mapping[str, str] | None,
        profile: _Profile,
    ) -> bytes:
        argv = [os.fspath(arg) for arg in argv]
        if not argv:
            raise ValueError("argv must not be empty")
        normalized = normalize_files(files)  # ValueError for names that would leave the scratch dir
        listing = [[name, len(data), 0o644] for name, data in normalized.items()]
        blobs = list(normalized.values())
        stdin_data = as_bytes(stdin)
        child_env = dict(SANDBOX_ENV)
        child_env.update({str(key): str(value) for key, value in (env or {}).items()})
        request = {
            "id": request_id,
            "argv": argv,
            "env": child_env,
            "files": listing,
            "stdin_len": len(stdin_data),
            "limits": {
                "cpu_s": float(limits.cpu_s),
                "wall_s": float(limits.wall_s),
                "output_bytes": int(limits.output_bytes),
                "disk_mb": profile.disk_mb,
                "address_space_mb": profile.address_space_mb,
            },
        }
        body = json.dumps(request).encode()
        return b"".join([MAGIC, struct.pack(">I", len(body)), body, *blobs, stdin_data])

    def _transact(
        self, slot: _Slot, payload: bytes, request_id: str, limits: Limits
    ) -> tuple[dict, bytes, bytes]:
        # Setup, cleanup and transfer time on top of the program's own wall-clock limit.
        deadline = time.monotonic() + limits.wall_s + BACKSTOP_GRACE_S + len(payload) / (20 * MIB)
        with slot.lock:
            slot.runs += 1
            slot.channel.send(payload, deadline)
            message = slot.channel.recv_message(deadline)
            reply = message.get("result")
            if not isinstance(reply, dict) or reply.get("id") != request_id:
                raise _SandboxFailure(f"unexpected answer from the sandbox supervisor: {message!r:.300}")
            out = slot.channel.read(int(reply["out_len"]), deadline)
            err = slot.channel.read(int(reply["err_len"]), deadline)
        return reply, out, err

    def _result(
        self,
        reply: dict,
        out: bytes,
        err: bytes,
        slot: _Slot,
        argv: Sequence[str],
        limits: Limits,
        profile: _Profile,
        started: float,
    ) -> ExecResult:
        stdout = decode_output(out)
        stderr = decode_output(err)
        status, detail = self._classify(reply, err, argv, limits, profile)
        code = reply.get("exit")  # the supervisor's: negative = killed by that signal
        if not isinstance(code, int) or reply.get("reason"):
            code = None  # the sandbox killed it for a limit (as the bwrap backend reports it)
        elif code < 0:
            code = 128 - code  # shell convention, as bwrap and docker report it
        maxrss_kb = int(reply.get("maxrss_kb") or 0)
        return ExecResult(
            status=status,
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
            cpu_s=float(reply.get("cpu_s") or 0.0),
            wall_s=float(reply.get("wall_s") or 0.0),
            peak_memory_mb=maxrss_kb / 1024 if maxrss_kb > 0 else None,
            isolation=self.isolation(limits, slot.hello),
            detail=detail,
            extra={
                "container_id": slot.container_id,
                "container_runs": slot.runs,
                "image": self.image,
                "host_wall_s": time.monotonic() - started,
                "cpu_s_source": "rusage summed over every process of the run (reaped by the supervisor)",
                "peak_memory_source": "largest single-process RSS (ru_maxrss), not the sum over the tree",
                "stdout_bytes": int(reply.get("stdout_bytes") or 0),
                "stderr_bytes": int(reply.get("stderr_bytes") or 0),
            },
        )

    @staticmethod
    def _classify(
        reply: dict, stderr: bytes, argv: Sequence[str], limits: Limits, profile: _Profile
    ) -> tuple[ExecStatus, str]:
        """The status, by the rules every backend shares (``capture.classify``)."""
        if reply.get("exec_error"):
            return "runtime_error", f"cannot execute {argv[0]!r}: {reply['exec_error']}"
        code = reply.get("exit")
        if not isinstance(code, int):
            return "sandbox_error", "the supervisor reported no exit status"
        signum = -code if code < 0 else None
        killed_for = {"output": "output_limit", "wall": "time_limit", "cpu": "cpu_limit"}.get(
            reply.get("reason")
        )
        oom = reply.get("oom")
        if oom is None:  # counter unreadable: an unexplained SIGKILL is the OOM killer's
            oom = signum == signal.SIGKILL and killed_for is None
        status, detail = classify(
            limits=limits,
            exit_code=128 + signum if signum else code,
            signum=signum,
            killed_for=killed_for,
            oom_killed=bool(oom),
            cpu_s=float(reply.get("cpu_s") or 0.0),
            stderr=stderr,
            overflow_stream=reply.get("overflow"),
        )
        if status == "memory_limit" and oom:
            detail += f" (container memory cgroup {profile.cgroup_memory_mb} MiB)"
        elif status == "runtime_error" and signum == signal.SIGXFSZ:
            detail += f": a file reached the {limits.disk_mb} MiB scratch limit"
        return status, detail

    def _failed(self, detail: str, limits: Limits, profile: _Profile, started: float) -> ExecResult:
        logger.warning("docker sandbox error: %s", detail)
        return ExecResult(
            status="sandbox_error",
            exit_code=None,
            stdout="",
            stderr="",
            cpu_s=0.0,
            wall_s=time.monotonic() - started,
            peak_memory_mb=None,
            isolation=self.isolation(limits),
            detail=detail,
            extra={"image": self.image},
        )

    # ------------------------------------------------------------------ the pool

    def _checkout(self, profile: _Profile) -> _Slot:
        stale: list[_Slot] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise _SandboxFailure("the docker sandbox backend was closed")
                    for index in range(len(self._idle) - 1, -1, -1):
                        slot = self._idle[index]
                        if slot.profile != profile:
                            continue
                        del self._idle[index]
                        if slot.channel.idle_and_alive():
                            return slot
                        self._slots.discard(slot)
                        stale.append(slot)
                    if len(self._slots) + self._starting < self.pool_size:
                        break
                    if self._idle:  # full of containers for other limits: replace the oldest idle one
                        victim = self._idle.pop(0)
                        self._slots.discard(victim)
                        stale.append(victim)
                        break
                    self._cond.wait()
                self._starting += 1
        finally:
            for slot in stale:
                self._destroy(slot)
        try:
            slot = self._start_container(profile)
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            self._slots.add(slot)
        return slot

    def _checkin(self, slot: _Slot) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(slot)
                self._cond.notify()
                return
            self._slots.discard(slot)
        self._destroy(slot)

    def _discard(self, slot: _Slot) -> None:
        with self._cond:
            self._slots.discard(slot)
            self._cond.notify()
        self._destroy(slot)

    def _destroy(self, slot: _Slot) -> None:
        slot.channel.close()  # closes the container's stdin: its supervisor exits
        self._remove_container(slot.container_id)
        with self._cond:
            self._slots.discard(slot)

    def _remove_container(self, container_id: str) -> None:
        try:
            self._client.api.remove_container(container_id, force=True)
        except self._docker.errors.NotFound:
            pass
        except self._docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: auto_remove already in progress
                logger.warning("could not remove sandbox container %s: %s", container_id[:12], _short(exc))
        except Exception as exc:
            logger.warning("could not remove sandbox container %s: %s", container_id[:12], _short(exc))

    def _start_container(self, profile: _Profile) -> _Slot:
        api = self._client.api
        types = self._docker.types
        disk = profile.disk_mb
        host_config = api.create_host_config(
            auto_remove=True,
            binds={"/usr": {"bind": "/usr", "mode": "ro"}},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            network_mode="none",
            read_only=True,
            mem_limit=profile.cgroup_memory_mb * MIB,
            memswap_limit=profile.cgroup_memory_mb * MIB,
            pids_limit=profile.pids,
            nano_cpus=round(profile.cpus * 1e9),
            ipc_mode="private",
            shm_size=disk * MIB,
            tmpfs={
                "/work/run": f"rw,exec,nosuid,nodev,size={disk}m,nr_inodes={TMPFS_INODES},mode=0755,"
                f"uid={SANDBOX_UID},gid={SANDBOX_GID}",
                "/tmp": f"rw,noexec,nosuid,nodev,size={disk}m,nr_inodes={TMPFS_INODES},mode=1777",
            },
            log_config=types.LogConfig(type="none"),
            ulimits=[types.Ulimit(name="core", soft=0, hard=0)],
        )
        name = f"sdpo-sandbox-{os.getpid()}-{next(self._names)}-{uuid.uuid4().hex[:6]}"
        try:
            created = api.create_container(
                self.image,
                command=[SANDBOX_PYTHON, "-I", "-S", SUPERVISOR_PATH],
                name=name,
                hostname="sandbox",
                user=f"{SANDBOX_UID}:{SANDBOX_GID}",
                working_dir="/work/run",
                environment={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                labels={LABEL: "1", OWNER_LABEL: self._owner},
                stdin_open=True,
                detach=False,  # with stdin_open: StdinOnce, stdin closes when we disconnect
                network_disabled=True,
                host_config=host_config,
            )
        except Exception as exc:
            raise _SandboxFailure(f"could not create a sandbox container: {_short(exc)}") from exc
        container_id = created["Id"]
        channel = None
        try:
            sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            channel = _Channel(sock)
            api.start(container_id)
            hello = channel.recv_message(time.monotonic() + START_TIMEOUT_S)
            if not hello.get("ready") or hello.get("uid") != SANDBOX_UID:
                raise _SandboxFailure(f"unexpected hello from the sandbox supervisor: {hello!r}")
        except Exception as exc:
            if channel is not None:
                channel.close()
            self._remove_container(container_id)
            if isinstance(exc, _SandboxFailure):
                raise
            raise _SandboxFailure(f"could not start a sandbox container: {_short(exc)}") from exc
        logger.debug("started sandbox container %s for %s", container_id[:12], profile)
        return _Slot(container_id, channel, profile, hello)

    def _remove_orphans(self) -> None:
        """Remove containers left by a process of this host that no longer exists."""
        host = socket.gethostname()
        try:
            containers = self._client.api.containers(all=True, filters={"label": LABEL})
        except Exception:
            return
        for container in containers:
            owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                self._remove_container(container["Id"])
