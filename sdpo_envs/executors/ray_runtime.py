"""Reaching Ray: import it (with the extra to install when it is missing) and connect to a
cluster, failing fast with the address and the timeout when nothing answers there."""

from __future__ import annotations

import importlib
import logging
import socket
from types import ModuleType

RAY_EXTRA = "pip install 'sdpo-gym[ray]'"
DEFAULT_CONNECT_TIMEOUT_S = 10.0


class RayUnavailable(ImportError):
    """Ray is not installed where judging on Ray was asked for."""


class RayConnectionError(ConnectionError):
    """No Ray cluster answers at the given address."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or ``RayUnavailable`` naming the extra that installs it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayUnavailable(
            f"judge_backend='ray' needs Ray, which is not installed ({exc}); install it with {RAY_EXTRA}"
        ) from None


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of a GCS or Ray Client address (``[ray://]host:port``); None for ``auto``."""
    bare = address.removeprefix("ray://").rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep:
        return None
    if not port.isdigit():
        raise ValueError(f"ray_address must be host:port, ray://host:port or 'auto', got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _same_endpoint(a: str, b: str, ray: ModuleType) -> bool:
    """Whether two addresses name one head: the same port, and the same host or both this machine."""
    pa, pb = _host_port(a), _host_port(b)
    if pa is None or pb is None or pa[1] != pb[1]:
        return pa == pb
    if pa[0] == pb[0]:
        return True
    here = {"localhost", ray.util.get_node_ip_address()}
    return all(h in here or h.startswith("127.") for h in (pa[0], pb[0]))


def probe(address: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Raise ``RayConnectionError`` unless something accepts connections at ``address``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise RayConnectionError(
            f"no Ray cluster answers at {address} (no connection to {target[0]}:{target[1]} within "
            f"{timeout_s:g} s: {reason}); start one with `ray start --head` or fix ray_address"
        ) from None


def connect(address: str | None, *, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> ModuleType:
    """Connect this process to the Ray cluster at ``address`` (once per process) and return ``ray``.

    ``address``: ``host:port`` of a cluster's head (``ray start --head`` prints it),
    ``ray://host:port`` (Ray Client), ``auto`` (the cluster this machine belongs to), or None
    (Ray's default: ``RAY_ADDRESS``, else a Ray started in this process).
    """
    ray = require_ray()
    if address is not None:
        probe(address, timeout_s)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto") and not _same_endpoint(address, current, ray):
            raise RayConnectionError(
                f"this process is already connected to the Ray cluster at {current}; it cannot also "
                f"join {address} (one cluster per process)"
            )
        return ray
    try:
        # Worker logs stay in the cluster's session logs: the CLIs print JSON to stdout.
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise RayConnectionError(
            f"could not join the Ray cluster at {address or 'the default address'}: {exc}"
        ) from exc
    return ray
