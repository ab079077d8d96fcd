"""Which sandbox backends can run on this machine (asked once per test process)."""

from __future__ import annotations

from functools import cache

from sdpo_envs.sandbox import available_backends


@cache
def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None when it can."""
    return available_backends()[name]
