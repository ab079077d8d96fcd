"""Where this process may create cgroups: the cgroup version, and our own group per controller.

Detected once per process (:func:`layout`), from ``/proc/self/mountinfo`` and
``/proc/self/cgroup``; groups that earlier, dead processes left behind are removed then.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field

ROOT_NAME = f"sdpo-gym.{os.getpid()}"
# v1: "cpuacct" counts the tree's CPU time, "cpu" throttles it (often one hierarchy, "cpu,cpuacct").
_V1_CONTROLLERS = ("memory", "pids", "cpuacct", "cpu")


@dataclass
class Layout:
    """Where our own cgroup lives, per controller (``memory``, ``pids``, ``cpuacct`` (v1 only), ``cpu``)."""

    version: str  # "v1" or "v2"
    parents: dict[str, str] = field(default_factory=dict)  # controller -> our cgroup dir
    reason: str = ""  # why some controllers are missing


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root of the mount, fstype, super options) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _source, opts = [*right.split(), "", "", ""][:3]
            if fstype in ("cgroup", "cgroup2"):
                fields = left.split()
                found.append((fields[4], fields[3], fstype, set(opts.split(","))))
    return found


def _host_path(point: str, root: str, own: str) -> str | None:
    """Our cgroup as a path under a mount that may show only a subtree (containers)."""
    if root != "/" and not (own == root or own.startswith(root.rstrip("/") + "/")):
        return None
    rel = own[len(root) :] if root != "/" else own
    return os.path.normpath(point + "/" + rel.lstrip("/"))


def _own_paths() -> dict[str, str]:
    """Controller list (``"memory"``, ``"cpu,cpuacct"``, ``""`` for v2) -> our cgroup path."""
    paths = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _writable_dir(path: str) -> bool:
    probe = os.path.join(path, f"{ROOT_NAME}.probe")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return True


def _detect() -> Layout | None:
    try:
        mounts = _mounts()
        own = _own_paths()
    except OSError:
        return None
    v1 = {}
    for point, root, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctrl in _V1_CONTROLLERS:
            if ctrl in opts and ctrl in own:
                path = _host_path(point, root, own[ctrl])
                if path is not None and _writable_dir(path):
                    v1[ctrl] = path
    if v1:
        missing = [c for c in _V1_CONTROLLERS if c not in v1]
        return Layout("v1", v1, f"cgroup-v1 {', '.join(missing)} not writable" if missing else "")
    for point, root, fstype, _opts in mounts:
        if fstype == "cgroup2" and "" in own:
            path = _host_path(point, root, own[""])
            return _detect_v2(path) if path is not None else None
    return None


def _detect_v2(own: str) -> Layout | None:
    try:
        with open(os.path.join(own, "cgroup.controllers")) as fh:
            available = set(fh.read().split())
        wanted = [c for c in ("memory", "pids", "cpu") if c in available]
        if not wanted:
            return None
        # Children only get controllers our cgroup enables for its subtree; the kernel
        # refuses that (EBUSY) while our own cgroup holds processes, unless it is the root.
        with open(os.path.join(own, "cgroup.subtree_control"), "w") as fh:
            fh.write(" ".join("+" + c for c in wanted))
    except OSError:
        return None
    return Layout("v2", dict.fromkeys(wanted, own))


_layout_lock = threading.Lock()
_layout: list[Layout | None] = []


def layout() -> Layout | None:
    """The usable cgroup layout here (cached), or ``None`` when we may not create cgroups."""
    with _layout_lock:
        if not _layout:
            _layout.append(_detect())
            if _layout[0] is not None:
                _remove_stale(_layout[0])
        return _layout[0]


def _remove_stale(lay: Layout) -> None:
    """Remove groups left by earlier processes that died without cleaning up."""
    for parent in set(lay.parents.values()):
        with contextlib.suppress(OSError):
            for entry in os.listdir(parent):
                if not entry.startswith("sdpo-gym.") or entry == ROOT_NAME:
                    continue
                pid = entry.split(".", 1)[1].split(".")[0]
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    _rmtree_cgroup(os.path.join(parent, entry))


def _rmtree_cgroup(path: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.listdir(path):
            sub = os.path.join(path, entry)
            if os.path.isdir(sub):
                _rmtree_cgroup(sub)
    with contextlib.suppress(OSError):
        os.rmdir(path)
