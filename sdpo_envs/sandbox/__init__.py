"""Run untrusted programs under enforced limits: ``bwrap``, ``docker``, ``process``, or ``auto``."""

from __future__ import annotations

from .base import EXEC_STATUSES, ExecResult, ExecStatus, Isolation, Limits, SandboxBackend, SandboxUnavailable
from .registry import available_backends, get_backend, run_python

__all__ = [
    "EXEC_STATUSES",
    "ExecResult",
    "ExecStatus",
    "Isolation",
    "Limits",
    "SandboxBackend",
    "SandboxUnavailable",
    "available_backends",
    "get_backend",
    "run_python",
]
