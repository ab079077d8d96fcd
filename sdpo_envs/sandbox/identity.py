"""Who a sandbox runs as, and how to start it as that user without ``fork()``.

* ``lease_uid``: an unprivileged uid/gid per concurrent run, unique machine-wide (a lock
  file per uid), so rlimits counted per user and signal permissions never cross runs.
  A uid is swept (``sweep_uid``: every process of it is killed) when it is leased and when
  a run gives it back, so no leftover of an earlier holder (a daemon that escaped the
  ``process`` backend, a container of a dead owner) can signal or count against the next.
* ``thread_credentials``: switch only the *calling thread* to that uid. Linux keeps
  credentials per thread; glibc's ``setuid()`` broadcasts to all threads, the raw system
  call does not. A child spawned from this thread inherits the thread's credentials, so
  ``subprocess`` can keep using ``vfork()`` (whose cost does not grow with our memory,
  unlike the ``fork()`` that ``Popen(user=...)`` forces: ~60-120 ms at 2 GiB RSS) and no
  extra ``setpriv`` exec is needed. The saved uid stays 0 so the thread can switch back;
  ``execve`` then sets the child's saved uid to the new effective uid, so the child keeps
  no way back to root and no capabilities.
* ``thread_netns`` / ``new_netns``: likewise per thread, enter a network namespace made once
  per slot, which is cheaper than a new one per run (about 1.3 ms here).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import random
import signal
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

# Outside every conventional range: Debian users/system ids, systemd dynamic users
# (61184-65519), subordinate id ranges (from 100000) and systemd-nspawn ranges (up to
# 1879048191). Override with SDPO_SANDBOX_UID_BASE.
UID_BASE = int(os.environ.get("SDPO_SANDBOX_UID_BASE", "1900000000"))
UID_COUNT = 4096

# (setresuid, setresgid, setgroups) system call numbers.
_SYSCALLS = {"x86_64": (117, 119, 116), "aarch64": (147, 149, 159)}
_CLONE_NEWNET = 0x40000000
_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
_CAP_SETGID, _CAP_SETUID, _CAP_SYS_ADMIN = 6, 7, 21

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _effective_caps() -> int:
    with open("/proc/thread-self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_capability(cap: int) -> bool:
    try:
        return bool(_effective_caps() >> cap & 1)
    except OSError:
        return False


def can_switch_credentials() -> bool:
    """True when this process may run children as another uid (root with CAP_SETUID/GID)."""
    return os.geteuid() == 0 and has_capability(_CAP_SETUID) and has_capability(_CAP_SETGID)


def can_switch_thread_credentials() -> bool:
    return can_switch_credentials() and platform.machine() in _SYSCALLS


def can_use_netns() -> bool:
    return os.geteuid() == 0 and has_capability(_CAP_SYS_ADMIN)


# -- uid leases -----------------------------------------------------------------------------
def _lock_dir() -> str:
    for base in ("/run", tempfile.gettempdir()):
        path = os.path.join(base, "sdpo-gym-uids")
        with contextlib.suppress(OSError):
            os.makedirs(path, mode=0o700, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
    raise OSError(errno.EACCES, "no writable directory for sandbox uid locks")


@dataclass
class UidLease:
    uid: int
    gid: int
    _fd: int

    def release(self, *, sweep: bool = False) -> None:
        """Give the uid back; ``sweep``: kill every process of it first (see ``sweep_uid``)."""
        if self._fd >= 0:
            if sweep:
                with contextlib.suppress(OSError):
                    sweep_uid(self.uid)
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


_lease_lock = threading.Lock()
# Where this process starts looking: at random, so concurrent processes do not walk the same
# uids (and do not re-lease each other's just released ones).
_next = [random.randrange(UID_COUNT)]


def lease_uid() -> UidLease:
    """Reserve an unused sandbox uid (gid = uid) until ``release`` or process exit.

    Leases rotate through the range rather than reusing the lowest free uid: processes of a
    finished run may linger as zombies until the host's init reaps them, and they would
    still count against RLIMIT_NPROC of a run that got the same uid right away.
    """
    directory = _lock_dir()
    with _lease_lock:
        for step in range(UID_COUNT):
            uid = UID_BASE + (_next[0] + step) % UID_COUNT
            fd = os.open(os.path.join(directory, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _next[0] = (uid - UID_BASE + 1) % UID_COUNT
            try:
                sweep_uid(uid)  # what an earlier holder left behind must not meet this run
            except OSError:
                os.close(fd)
                raise
            return UidLease(uid, uid, fd)
    raise OSError(errno.EAGAIN, f"all {UID_COUNT} sandbox uids from {UID_BASE} are in use")


def sweep_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` on this machine (every pid namespace below ours).

    ``kill(-1, SIGKILL)`` from a thread running as ``uid`` reaches exactly the processes that
    uid may signal, and no process of ours (the caller's own process is never a target, and
    our other threads are root). The kernel delivers it to children forked meanwhile too, so
    one call leaves nothing running; a second one is cheap insurance. Needs root (a no-op
    where this process cannot switch credentials: then it never runs anything as ``uid``).
    """
    if not can_switch_thread_credentials():
        return
    box: dict[str, BaseException] = {}

    def sweeper() -> None:
        try:
            with thread_credentials(uid, uid):
                for _ in range(2):
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except ProcessLookupError:  # nothing of that uid is left
                        break
        except BaseException as exc:  # reported to the caller's thread below
            box["error"] = exc

    # A thread of its own: the caller's thread may hold other credentials (a run's spawn).
    thread = threading.Thread(target=sweeper, name="sdpo-uid-sweep")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]


# -- per-thread credentials -----------------------------------------------------------------
def _syscall(number: int, *args: int) -> int:
    return _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))


def _set_groups(nr: int, groups: list[int]) -> None:
    array = (ctypes.c_uint * max(1, len(groups)))(*groups)
    result = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(len(groups)), array)
    _check(result, "setgroups")


@contextlib.contextmanager
def thread_credentials(uid: int, gid: int) -> Iterator[None]:
    """Run the body with this thread (only) as ``uid``/``gid`` and no supplementary groups."""
    setresuid, setresgid, setgroups = _SYSCALLS[platform.machine()]
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    groups = os.getgroups()
    dumpable = _libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    _set_groups(setgroups, [])
    try:
        _check(_syscall(setresgid, gid, gid, 0), "setresgid")
        try:
            _check(_syscall(setresuid, uid, uid, 0), "setresuid")
            try:
                yield
            finally:
                _check(_syscall(setresuid, ruid, euid, suid), "restoring uid")
        finally:
            _check(_syscall(setresgid, rgid, egid, sgid), "restoring gid")
    finally:
        _set_groups(setgroups, groups)
        # Changing the effective uid marks the whole process non-dumpable; undo that.
        if dumpable > 0:
            _libc.prctl(_PR_SET_DUMPABLE, dumpable, 0, 0, 0)


# -- network namespaces ---------------------------------------------------------------------
def _bring_up_loopback() -> None:
    # struct ifreq: 16-byte name then a short of flags (SIOCGIFFLAGS / SIOCSIFFLAGS).
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(sock.fileno(), siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def new_netns() -> int:
    """A new network namespace with only loopback (up); returns an fd that keeps it alive.

    It belongs to the host user namespace, so a sandbox (in its own user namespace) holds
    no capability over it: it cannot add interfaces, routes or change sysctls.
    """
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _bring_up_loopback()
            box["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as exc:  # reported to the caller's thread below
            box["error"] = exc

    # A throwaway thread: unshare() moves only the calling thread, and it then exits.
    thread = threading.Thread(target=worker, name="sdpo-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return int(box["fd"])  # type: ignore[arg-type]


@contextlib.contextmanager
def thread_netns(fd: int) -> Iterator[None]:
    """Run the body with this thread (only) in the network namespace ``fd``."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), "setns(net)")
        try:
            yield
        finally:
            _check(_libc.setns(original, _CLONE_NEWNET), "restoring the network namespace")
    finally:
        os.close(original)
