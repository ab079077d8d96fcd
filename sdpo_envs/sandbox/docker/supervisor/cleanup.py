"""After each run: kill and reap every process, wipe every writable place, report what is left."""

from __future__ import annotations

import contextlib
import ctypes
import os

from .counters import kill_all, other_pids

SCRATCH = "/work/run"  # a tmpfs of its own; /work itself is read-only
WIPE_DIRS = (SCRATCH, "/tmp", "/dev/shm", "/dev/mqueue")
IPC_RMID = 0

_libc = ctypes.CDLL(None, use_errno=True)


def remove_ipc():
    for kind, remove in (
        ("shm", lambda ident: _libc.shmctl(ident, IPC_RMID, None)),
        ("msg", lambda ident: _libc.msgctl(ident, IPC_RMID, None)),
        ("sem", lambda ident: _libc.semctl(ident, 0, IPC_RMID)),
    ):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1:
                remove(int(fields[1]))


def wipe(directory):
    """Delete everything under ``directory`` (not itself), even dirs the program made unreadable."""
    stack, seen = [directory], []
    while stack:
        path = stack.pop()
        if path != directory:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700)
        seen.append(path)
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            os.unlink(entry.path)
                    except OSError:
                        pass
        except OSError:
            pass
    for path in reversed(seen[1:]):  # children were appended after their parents
        with contextlib.suppress(OSError):
            os.rmdir(path)


def cleanup(usage):
    """Kill and reap everything, wipe every writable place; return what could not be undone."""
    problems = []
    for _ in range(100):
        kill_all()
        usage.reap(block_s=0.02)
        if not other_pids():
            break
    else:
        problems.append(f"processes survived: {other_pids()[:10]}")
    try:
        remove_ipc()
    except Exception as exc:
        problems.append(f"ipc: {exc}")
    try:
        os.chmod(SCRATCH, 0o755)  # the program owns it and may have locked it
    except OSError as exc:
        problems.append(f"chmod {SCRATCH}: {exc}")
    for directory in WIPE_DIRS:
        wipe(directory)
        try:
            left = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{directory}: {exc}")
            continue
        if left:
            problems.append(f"{directory} not empty: {left[:5]}")
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                if len(handle.read().splitlines()) > 1:
                    problems.append(f"SysV {kind} objects left")
        except OSError:
            pass
    return problems
