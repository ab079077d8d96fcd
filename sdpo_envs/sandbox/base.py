"""The sandbox contract shared by every backend: limits in, an ``ExecResult`` out."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ExecStatus = Literal["ok", "runtime_error", "time_limit", "memory_limit", "output_limit", "sandbox_error"]
EXEC_STATUSES: tuple[str, ...] = (
    "ok",
    "runtime_error",
    "time_limit",
    "memory_limit",
    "output_limit",
    "sandbox_error",
)


MIN_CPUS = 0.01  # the smallest CPU bandwidth quota: 1 ms per 100 ms period (Docker's minimum too)


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (the message says why)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run.

    ``cpu_s`` is CPU time of the whole process tree (not wall clock); ``wall_s`` is the
    backstop for programs that sleep or block. ``cpus`` is how many cores the tree may use
    at once (a kernel CPU bandwidth quota where the backend can set one; it bounds how fast
    the tree can burn through ``cpu_s``). ``memory_mb`` caps the tree's memory,
    ``processes`` its task count, ``output_bytes`` stdout and stderr each, ``disk_mb`` the
    writable scratch space.
    """

    cpu_s: float = 5.0
    wall_s: float = 10.0
    memory_mb: int = 512
    output_bytes: int = 1 << 20
    processes: int = 64
    disk_mb: int = 64
    cpus: float = 1.0

    def __post_init__(self) -> None:
        for name in ("cpu_s", "wall_s", "memory_mb", "output_bytes", "processes", "disk_mb", "cpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if self.cpus < MIN_CPUS:
            raise ValueError(f"Limits.cpus must be at least {MIN_CPUS}, got {self.cpus!r}")


@dataclass(frozen=True)
class Isolation:
    """What a run actually had enforced, so results can be trusted (or not) knowingly."""

    backend: str
    enforced: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.backend}: " + ", ".join(self.enforced)
        if self.missing:
            text += "; NOT enforced: " + ", ".join(self.missing)
        return text


@dataclass
class ExecResult:
    """The outcome of one sandboxed command."""

    status: ExecStatus
    exit_code: int | None
    stdout: str
    stderr: str
    cpu_s: float
    wall_s: float
    peak_memory_mb: float | None
    isolation: Isolation
    detail: str = ""  # why a non-ok status was chosen (signal, limit hit, backend error)
    extra: dict = field(default_factory=dict)
    # A ``sandbox_error`` that something outside the program caused (the host's OOM killer,
    # a process outside the sandbox, a tree starved of CPU by its neighbours): the run says
    # nothing about the program and should be run again, not scored.
    rerun: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxBackend(abc.ABC):
    """A way to run untrusted programs.

    ``run`` executes ``argv`` inside a fresh scratch directory (the working directory, the
    only writable place besides a private ``/tmp``) into which ``files`` are written first.
    ``python`` is the interpreter path to use inside the sandbox.
    """

    name: str = "abstract"
    trusted_isolation: bool = True  # False for backends that must never run untrusted code by default

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> str | None:
        """``None`` when usable here, else the reason it is not."""

    @property
    @abc.abstractmethod
    def python(self) -> str:
        """Path of the Python interpreter inside the sandbox."""

    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, str | bytes] | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run ``argv`` with ``files`` in its scratch dir; never raises for program failures."""

    def close(self) -> None:
        """Release long-lived resources (warm containers, cgroups)."""
