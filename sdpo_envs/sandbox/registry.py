"""Choosing a backend by name, and the ``run_python`` entry point."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from .base import ExecResult, Limits, SandboxBackend, SandboxUnavailable
from .bwrap.backend import BwrapBackend
from .docker.backend import DockerBackend
from .process import ProcessBackend

logger = logging.getLogger(__name__)

# Strongest first: ``auto`` picks the first usable one and never falls back to ``process``.
AUTO_ORDER = ("bwrap", "docker")
_instances: dict[tuple[str, bool], SandboxBackend] = {}
_lock = threading.Lock()


BACKENDS: dict[str, type[SandboxBackend]] = {
    "bwrap": BwrapBackend,
    "docker": DockerBackend,
    "process": ProcessBackend,
}


def _backend_class(name: str) -> type[SandboxBackend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; choose bwrap, docker, process or auto")
    return BACKENDS[name]


def available_backends() -> dict[str, str | None]:
    """Backend name -> ``None`` if usable here, else the reason it is not."""
    return {name: _backend_class(name).probe() for name in ("bwrap", "docker", "process")}


def get_backend(name: str | SandboxBackend = "auto", *, allow_unsafe: bool = False) -> SandboxBackend:
    """A shared backend instance by name (``auto`` = the strongest available).

    ``process`` only enforces rlimits; it is refused unless ``allow_unsafe=True``.
    """
    if isinstance(name, SandboxBackend):
        return name
    with _lock:
        key = (name, allow_unsafe)
        if key in _instances:
            return _instances[key]
        if name == "auto":
            reasons = {}
            for candidate in AUTO_ORDER:
                reason = _backend_class(candidate).probe()
                if reason is None:
                    backend = _backend_class(candidate)()
                    logger.info("sandbox backend 'auto' chose %r", candidate)
                    break
                reasons[candidate] = reason
            else:
                detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
                raise SandboxUnavailable(
                    f"no isolating sandbox backend is available ({detail}). Install bubblewrap "
                    "(apt-get install bubblewrap) or start a Docker engine; backend='process' runs "
                    "code without isolation and needs allow_unsafe=True."
                )
        else:
            cls = _backend_class(name)
            reason = cls.probe()
            if reason is not None:
                raise SandboxUnavailable(f"sandbox backend {name!r} is unavailable: {reason}")
            if not cls.trusted_isolation and not allow_unsafe:
                raise SandboxUnavailable(
                    f"backend {name!r} does not isolate untrusted code (rlimits only); "
                    "pass allow_unsafe=True to use it anyway"
                )
            backend = cls()
        _instances[key] = backend
        return backend


def run_python(
    code: str,
    *,
    stdin: str | bytes = "",
    backend: str | SandboxBackend = "auto",
    limits: Limits | None = None,
    files: Mapping[str, str | bytes] | None = None,
    allow_unsafe: bool = False,
) -> ExecResult:
    """Run Python source ``code`` in a sandbox and return what happened.

    >>> result = run_python("import sys; print(sum(map(int, sys.stdin.read().split())))", stdin="40 2")
    >>> result.status, result.stdout
    ('ok', '42\\n')
    >>> run_python("while True: pass", limits=Limits(cpu_s=0.5, wall_s=5)).status
    'time_limit'
    >>> run_python("import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)").status
    'runtime_error'
    """
    chosen = get_backend(backend, allow_unsafe=allow_unsafe)
    all_files = dict(files or {})
    all_files["main.py"] = code
    return chosen.run([chosen.python, "main.py"], files=all_files, stdin=stdin, limits=limits or Limits())
