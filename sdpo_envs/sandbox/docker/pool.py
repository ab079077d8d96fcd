"""The docker backend's pool of warm containers: start, reuse, replace and remove them.

A container is reused only for runs with an equal :class:`Profile` (the container-level part of
``Limits``). Containers are labelled with their owner (host and pid), so a later process removes
those a dead one left behind. Each container runs as a uid of its own (``identity.lease_uid``,
held while it lives): without a user namespace a shared uid would be one host user for every
container, and the kernel counts per user what one container's program could then exhaust
for all the others (inotify instances, pipe buffer pages, message queue bytes, pending
signals, RLIMIT_NPROC), and a leftover process of that uid could signal any of them.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import identity
from ..base import MIN_CPUS, Limits
from .channel import Channel, SandboxFailure, short
from .image import SUPERVISOR_COMMAND

logger = logging.getLogger(__name__)

LABEL = "org.sdpo-gym.sandbox"
OWNER_LABEL = "org.sdpo-gym.owner"
MIB = 1 << 20
SUPERVISOR_MB = 32  # memory cgroup headroom for the supervisor (PID 1) on top of Limits.memory_mb
TMPFS_INODES = 16384
START_TIMEOUT_S = 60.0


def default_pool_size() -> int:
    """``$SDPO_DOCKER_POOL_SIZE``, else max(2, CPU count)."""
    configured = os.environ.get("SDPO_DOCKER_POOL_SIZE")
    if configured:
        return max(1, int(configured))
    return max(2, os.cpu_count() or 1)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Profile:
    """The container-level part of ``Limits``: containers are reused only for equal profiles."""

    memory_mb: int
    processes: int
    disk_mb: int
    cpus: float  # the container's CPU quota (Limits.cpus, capped by the backend and the host)

    @classmethod
    def of(cls, limits: Limits, max_cpus: float) -> Profile:
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


@dataclass(eq=False)
class Slot:
    """One warm container."""

    container_id: str
    channel: Channel
    profile: Profile
    hello: dict
    lease: identity.UidLease | None = None  # the container's own uid, held while it lives
    runs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def uid(self) -> int:
        return int(self.hello.get("uid", -1))


class ContainerPool:
    """At most ``size`` warm containers of ``image``; ``checkout`` waits while all are busy."""

    def __init__(self, client: Any, docker: Any, image: str, size: int) -> None:
        self.client = client
        self.docker = docker
        self.image = image
        self.size = size
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._cond = threading.Condition()
        self._idle: list[Slot] = []
        self._slots: set[Slot] = set()
        self._starting = 0
        self._closed = False
        self._names = itertools.count()
        self.remove_orphans()

    def container_ids(self) -> list[str]:
        """Ids of the live containers (idle and busy)."""
        with self._cond:
            return sorted(slot.container_id for slot in self._slots)

    def close(self) -> None:
        """Remove every container (busy ones as soon as their run is checked in)."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for slot in idle:
            self.destroy(slot)

    def checkout(self, profile: Profile) -> Slot:
        stale: list[Slot] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise SandboxFailure("the docker sandbox backend was closed")
                    for index in range(len(self._idle) - 1, -1, -1):
                        slot = self._idle[index]
                        if slot.profile != profile:
                            continue
                        del self._idle[index]
                        if slot.channel.idle_and_alive():
                            return slot
                        self._slots.discard(slot)
                        stale.append(slot)
                    if len(self._slots) + self._starting < self.size:
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
                self.destroy(slot)
        try:
            slot = self.start_container(profile)
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            self._slots.add(slot)
        return slot

    def checkin(self, slot: Slot) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(slot)
                self._cond.notify()
                return
            self._slots.discard(slot)
        self.destroy(slot)

    def discard(self, slot: Slot) -> None:
        with self._cond:
            self._slots.discard(slot)
            self._cond.notify()
        self.destroy(slot)

    def destroy(self, slot: Slot) -> None:
        slot.channel.close()  # closes the container's stdin: its supervisor exits
        self.remove_container(slot.container_id)
        with self._cond:
            self._slots.discard(slot)
        if slot.lease is not None:
            slot.lease.release(sweep=True)  # nothing of the container survives under its uid

    def remove_container(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except self.docker.errors.NotFound:
            pass
        except self.docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: auto_remove already in progress
                logger.warning("could not remove sandbox container %s: %s", container_id[:12], short(exc))
        except Exception as exc:
            logger.warning("could not remove sandbox container %s: %s", container_id[:12], short(exc))

    def start_container(self, profile: Profile) -> Slot:
        try:
            lease = identity.lease_uid()
        except OSError as exc:
            raise SandboxFailure(f"no sandbox uid for a container: {exc}") from exc
        try:
            return self._start_container(profile, lease)
        except BaseException:
            lease.release(sweep=True)
            raise

    def _start_container(self, profile: Profile, lease: identity.UidLease) -> Slot:
        api = self.client.api
        types = self.docker.types
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
                f"uid={lease.uid},gid={lease.gid}",
                "/tmp": f"rw,noexec,nosuid,nodev,size={disk}m,nr_inodes={TMPFS_INODES},mode=1777",
            },
            log_config=types.LogConfig(type="none"),
            ulimits=[types.Ulimit(name="core", soft=0, hard=0)],
        )
        name = f"sdpo-sandbox-{os.getpid()}-{next(self._names)}-{uuid.uuid4().hex[:6]}"
        try:
            created = api.create_container(
                self.image,
                command=SUPERVISOR_COMMAND,
                name=name,
                hostname="sandbox",
                user=f"{lease.uid}:{lease.gid}",
                working_dir="/work/run",
                environment={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                labels={LABEL: "1", OWNER_LABEL: self._owner},
                stdin_open=True,
                detach=False,  # with stdin_open: StdinOnce, stdin closes when we disconnect
                network_disabled=True,
                host_config=host_config,
            )
        except Exception as exc:
            raise SandboxFailure(f"could not create a sandbox container: {short(exc)}") from exc
        container_id = created["Id"]
        channel = None
        try:
            sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            channel = Channel(sock)
            api.start(container_id)
            hello = channel.recv_message(time.monotonic() + START_TIMEOUT_S)
            if not hello.get("ready") or hello.get("uid") != lease.uid:
                raise SandboxFailure(f"unexpected hello from the sandbox supervisor: {hello!r}")
        except Exception as exc:
            if channel is not None:
                channel.close()
            self.remove_container(container_id)
            if isinstance(exc, SandboxFailure):
                raise
            raise SandboxFailure(f"could not start a sandbox container: {short(exc)}") from exc
        logger.debug("started sandbox container %s for %s", container_id[:12], profile)
        return Slot(container_id, channel, profile, hello, lease)

    def remove_orphans(self) -> None:
        """Remove containers left by a process of this host that no longer exists."""
        host = socket.gethostname()
        try:
            containers = self.client.api.containers(all=True, filters={"label": LABEL})
        except Exception:
            return
        for container in containers:
            owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                self.remove_container(container["Id"])
