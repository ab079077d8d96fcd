"""Per-concurrency *slots*: what one running sandbox owns, created once and reused.

A slot holds an unprivileged uid (unique machine-wide while held), its cgroups and an
empty network namespace. Making these costs milliseconds; reusing them costs a few
counter resets. At most one run uses a slot at a time, so concurrent runs never share a
uid, a cgroup or a network namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .. import identity
from . import cgroups


@dataclass
class Slot:
    lease: identity.UidLease | None  # None: we cannot switch uid (not root)
    cgroup: cgroups.SlotCgroup | None  # None: no writable cgroups here
    netns: int | None  # fd of the slot's network namespace; None: bwrap makes one per run

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.netns is not None:
            os.close(self.netns)
            self.netns = None
        if self.lease is not None:
            self.lease.release(sweep=True)


def new_slot(*, switch_uid: bool, netns: bool) -> Slot:
    lease = identity.lease_uid() if switch_uid else None
    try:
        lay = cgroups.layout()
        name = f"slot-{lease.uid if lease else threading.get_native_id()}"
        group = cgroups.SlotCgroup(lay, name) if lay is not None else None
        netns_fd = identity.new_netns() if netns else None
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return Slot(lease, group, netns_fd)


class SlotPool:
    """Slots are created on demand and reused; ``acquire`` never blocks."""

    def __init__(self, factory: Callable[[], Slot]) -> None:
        self._factory = factory
        self._free: list[Slot] = []
        self._lock = threading.Lock()

    def acquire(self) -> Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._factory()

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._free.append(slot)

    def idle(self) -> list[Slot]:
        with self._lock:
            return list(self._free)

    def close(self) -> None:
        """Remove idle slots (slots in use come back through ``release`` and stay usable)."""
        with self._lock:
            slots, self._free = self._free, []
        for slot in slots:
            slot.close()
