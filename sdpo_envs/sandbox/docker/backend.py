"""The ``docker`` sandbox backend: warm, locked-down containers on a real Docker engine.

How a run goes:

* The engine is reached through the Docker SDK (``docker.from_env()``, so ``DOCKER_HOST``
  and the TLS variables are honoured). The SDK is imported lazily: ``sdpo_envs`` imports
  without it.
* The image is built locally, never pulled: :mod:`.image` generates a tiny root
  filesystem and ``docker import``\\ s it, tagged with a hash of its content. The host's
  ``/usr`` is bind-mounted read-only at run time, so ``/usr/bin/python3`` inside is the
  host's interpreter (the engine must run on this machine, or on one with the same /usr).
* A small pool of warm containers (:mod:`.pool`) is reused between runs. Each container runs with
  ``network_mode=none``, a read-only root, a uid of its own per container, every capability dropped,
  ``no-new-privileges``, the engine's default seccomp profile, a memory cgroup without
  swap, a pids cgroup, a CPU quota of ``Limits.cpus`` (containers are reused only for runs
  with the same quota), and size-limited tmpfs for the scratch dir ``/work/run``, ``/tmp``
  and ``/dev/shm`` (nothing else is writable). Its only long-lived process (PID 1) is
  :mod:`.supervisor`, which the host talks to over the container's attached stdio
  (:mod:`.channel`; one connection per container, no ``docker exec`` per run).
* Per run, the supervisor writes the files into the empty ``/work/run``, forks the program
  with its own rlimits (CPU, address space, file size, no core, no raising its priority),
  nice 10, SCHED_IDLE and ``oom_score_adj`` 1000, polls the container's cgroup CPU counter to enforce
  the CPU limit of the whole process tree (every 50 ms, more often near the limit; the
  kernel's CPU quota bounds how fast the tree can get there and, with the program at the
  idle policy, the supervisor preempts it the moment it wakes), enforces the wall clock and the output
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
import itertools
import json
import logging
import os
import signal
import struct
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from ..base import MIN_CPUS, ExecResult, ExecStatus, Isolation, Limits, SandboxBackend, SandboxUnavailable
from ..capture import classify, decode_output
from ..files import as_bytes, normalize_files
from ..starvation import STARVE_FACTOR
from .channel import MAGIC, Backstop, SandboxFailure, short
from .image import SANDBOX_PYTHON, ensure_image
from .pool import LABEL, MIB, OWNER_LABEL, SUPERVISOR_MB, ContainerPool, Profile, Slot, default_pool_size

__all__ = ["LABEL", "OWNER_LABEL", "DockerBackend"]

logger = logging.getLogger(__name__)

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
        self.pool_size = int(pool_size or default_pool_size())
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
            raise SandboxUnavailable(f"the Docker engine could not be used: {short(exc)}") from exc
        self.engine_version = str(version.get("Version", "?"))
        engine_cpus = float(info.get("NCPU") or os.cpu_count() or 1)
        self._max_cpus = min(engine_cpus, self.cpus) if self.cpus is not None else engine_cpus
        self._seccomp = any("seccomp" in str(option) for option in info.get("SecurityOptions") or ())
        self._pid = os.getpid()
        self._requests = itertools.count()
        self._pool = ContainerPool(self._client, docker, self.image, self.pool_size)
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
                f"no Docker engine answers at DOCKER_HOST={where} ({short(exc, 200)}). Start one "
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
        profile = Profile.of(limits, self._max_cpus)
        request_id = f"{os.getpid()}-{next(self._requests)}"
        payload = self._payload(request_id, argv, files, stdin, limits, env, profile)
        failure = "no attempt was made"
        for attempt in range(2):
            try:
                slot = self._pool.checkout(profile)
            except SandboxFailure as exc:
                return self._failed(str(exc), limits, profile, started)
            try:
                reply, out, err = self._transact(slot, payload, request_id, limits)
            except Backstop as exc:
                self._pool.discard(slot)
                return self._failed(
                    f"host-side backstop: {exc} within {STARVE_FACTOR * limits.wall_s + BACKSTOP_GRACE_S:.0f} s; "
                    "the container was discarded",
                    limits,
                    profile,
                    started,
                )
            except SandboxFailure as exc:
                self._pool.discard(slot)
                failure = str(exc)
                logger.warning("docker sandbox attempt %d failed: %s", attempt + 1, failure)
                continue
            if reply.get("clean"):
                self._pool.checkin(slot)
            else:
                logger.warning(
                    "docker sandbox container %s was not left clean (%s); replacing it",
                    slot.container_id[:12],
                    "; ".join(reply.get("problems") or ["?"]),
                )
                self._pool.discard(slot)
            if reply.get("setup_error"):
                failure = f"could not prepare the run's scratch directory: {reply['setup_error']}"
                if reply.get("stale"):
                    continue
                return self._failed(failure, limits, profile, started)
            if reply.get("reason") == "starved":
                return self._failed(
                    f"starved of CPU by other programs past {STARVE_FACTOR:g} times the "
                    f"{limits.wall_s:g}s wall clock",
                    limits,
                    profile,
                    started,
                    rerun=True,
                )
            return self._result(reply, out, err, slot, argv, limits, profile, started)
        return self._failed(failure, limits, profile, started)

    def close(self) -> None:
        """Remove every container of this backend (busy ones as soon as their run returns)."""
        self._pool.close()
        _LIVE.discard(self)

    # ------------------------------------------------------------------ introspection

    def container_ids(self) -> list[str]:
        """Ids of this backend's live containers (idle and busy)."""
        return self._pool.container_ids()

    def isolation(self, limits: Limits | None = None, hello: Mapping[str, Any] | None = None) -> Isolation:
        """What a run under ``limits`` has enforced (see the module docstring)."""
        limits = limits or Limits()
        profile = Profile.of(limits, self._max_cpus)
        cgroup_cpu = hello is None or bool(hello.get("cpu_file"))
        uid = "(leased per container)" if hello is None else hello.get("uid")
        # What the kernel holds the container to, as its supervisor read it (None: not started).
        quota = profile.cpus if hello is None else hello.get("cpu_quota")
        nice = 10 if hello is None else hello.get("program_nice")
        policy = "SCHED_IDLE" if hello is None else hello.get("program_policy")
        enforced = [
            f"docker {self.engine_version} container: own pid, mount, ipc, uts and network namespaces",
            "network: none",
            "read-only root filesystem (host /usr bind-mounted read-only)",
            f"non-root uid {uid} of its own (no other container or run shares it), "
            "all capabilities dropped, no-new-privileges",
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
            how = f"nice {nice}" + (f" and {policy}" if policy else "")
            enforced.append(f"{how} for the whole tree (inherited; RLIMIT_NICE 0, cannot be undone)")
        missing = [f"user namespace (uid {uid} inside is uid {uid} on the host)"]
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
        profile: Profile,
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
        self, slot: Slot, payload: bytes, request_id: str, limits: Limits
    ) -> tuple[dict, bytes, bytes]:
        # Setup, cleanup and transfer time on top of the program's own wall-clock limit.
        # The supervisor stretches the wall clock up to STARVE_FACTOR times for a starved tree.
        wall = STARVE_FACTOR * limits.wall_s
        deadline = time.monotonic() + wall + BACKSTOP_GRACE_S + len(payload) / (20 * MIB)
        with slot.lock:
            slot.runs += 1
            slot.channel.send(payload, deadline)
            message = slot.channel.recv_message(deadline)
            reply = message.get("result")
            if not isinstance(reply, dict) or reply.get("id") != request_id:
                raise SandboxFailure(f"unexpected answer from the sandbox supervisor: {message!r:.300}")
            out = slot.channel.read(int(reply["out_len"]), deadline)
            err = slot.channel.read(int(reply["err_len"]), deadline)
        return reply, out, err

    def _result(
        self,
        reply: dict,
        out: bytes,
        err: bytes,
        slot: Slot,
        argv: Sequence[str],
        limits: Limits,
        profile: Profile,
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
        reply: dict, stderr: bytes, argv: Sequence[str], limits: Limits, profile: Profile
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

    def _failed(
        self, detail: str, limits: Limits, profile: Profile, started: float, *, rerun: bool = False
    ) -> ExecResult:
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
            rerun=rerun,
        )
