"""Where judge calls may run, by name: the names every config, env and command line accepts."""

from __future__ import annotations

JUDGE_BACKENDS = ("local", "ray")


def check_judge_backend(judge_backend: str, ray_address: str | None) -> None:
    """Raise ``ValueError`` for an unknown backend, or an address given to the local one."""
    if judge_backend not in JUDGE_BACKENDS:
        raise ValueError(f"judge_backend must be one of {JUDGE_BACKENDS}, got {judge_backend!r}")
    if ray_address is not None and judge_backend != "ray":
        raise ValueError(f"ray_address={ray_address!r} needs judge_backend='ray' (got {judge_backend!r})")
