"""Real-time priority for the thread that watches a sandboxed tree's CPU counter.

A tree is stopped at its CPU limit only as soon as the thread that reads its counter wakes
up. Under the normal scheduler that thread competes with every busy process on the machine,
the sandboxes' own groups included (they weigh as much as several processes): woken from
``poll()`` with three busy trees running it was measured up to 78 ms late on a 2-core
machine, and a loaded CI machine let a tree run 0.44 s of CPU past a 1 s limit. At the
lowest real-time priority (``SCHED_FIFO`` 1) it woke within 0.1 ms. It sleeps nearly all the
time, reads at most the run's capped output, and the kernel's real-time throttling
(``sched_rt_runtime_us``) bounds it anyway.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_POLICY = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK  # a child forked by mistake runs as normal
_PRIORITY = 1


@contextlib.contextmanager
def realtime_watcher() -> Iterator[str | None]:
    """Run the block with the calling thread at real-time priority, then restore it.

    Yields ``None`` when the thread was raised, or why it could not be (no ``CAP_SYS_NICE``,
    no ``RLIMIT_RTPRIO``, or a cgroup with no real-time budget): the block then runs at the
    thread's normal priority.
    """
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, _POLICY, os.sched_param(_PRIORITY))
    except OSError as exc:
        why = exc.strerror or str(exc)
    else:
        why = None
    try:
        yield why
    finally:
        if why is None:
            os.sched_setscheduler(0, policy, param)  # always allowed: it lowers the priority
