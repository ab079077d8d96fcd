"""Host-side facts for the ``bwrap`` backend: where things are, the fixed bwrap arguments,
and whether a sandbox can be created here at all (``probe``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

from .. import identity

SCRATCH = "/scratch"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def find_bwrap() -> str | None:
    found = shutil.which("bwrap")
    if found is None and os.access("/usr/bin/bwrap", os.X_OK):
        found = "/usr/bin/bwrap"
    return found


def sandbox_python() -> tuple[str, str | None]:
    """(interpreter path inside the sandbox, host prefix to bind read-only, or ``None``).

    Debian's ``/usr/bin/python3`` lives under ``/usr``, which is bound anyway; only without
    it do we fall back to the running interpreter's installation prefix.
    """
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3", None
    prefix = os.path.realpath(sys.base_prefix)
    return os.path.join(prefix, "bin", "python3"), (None if prefix.startswith("/usr/") else prefix)


def root_links() -> list[str]:
    """Recreate the host's top-level ``/bin``, ``/lib*`` as symlinks (merged /usr) or binds."""
    args = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    return args


def static_args(bwrap: str, *, share_net: bool, mount_proc: bool) -> list[str]:
    """The bwrap arguments every run shares (per-run ones are appended by ``BwrapRun``)."""
    # --unshare-user with --disable-userns: no nested user namespaces, which would hand
    # the program (namespaced) root and so a much larger kernel attack surface.
    args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    if share_net:
        args.append("--share-net")  # the slot's own empty netns, entered by the spawning thread
    # --as-pid-1: the program itself is pid 1, so no bwrap helper of the same uid is left in
    # the sandbox for it to ptrace or to read through /proc/1 (fds, memory).
    args += ["--as-pid-1", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", *root_links()]
    _python, prefix = sandbox_python()
    if prefix:
        args += ["--ro-bind", prefix, prefix]
    if mount_proc:
        args += ["--proc", "/proc"]
    return [*args, *minimal_dev(), "--clearenv"]


def minimal_dev() -> list[str]:
    """A read-only ``/dev`` with the usual character devices and links.

    Cheaper than bwrap's ``--dev`` (no tmpfs, devpts or tty: ~0.5 ms less CPU per run) and
    not writable. ``/dev/shm`` points at the private ``/tmp`` so POSIX semaphores (and so
    ``multiprocessing`` locks and queues) keep working.
    """
    args = []
    for name in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists(f"/dev/{name}"):
            args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd", "--symlink", "/tmp", "/dev/shm"]
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{number}", f"/dev/{name}"]
    return args


def probe() -> str | None:
    """``None`` when a real sandbox starts here, else why not (run once per process)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed; install it with: apt-get install bubblewrap"
    python, _prefix = sandbox_python()
    if not os.access(python, os.X_OK):
        return f"no Python interpreter at {python} to run inside the sandbox"
    if identity.can_switch_credentials() and not identity.can_switch_thread_credentials():
        return "cannot start the sandbox as an unprivileged uid on this CPU architecture"
    args = [*static_args(bwrap, share_net=False, mount_proc=True), "--", python, "-S", "-c", "pass"]
    try:
        with contextlib.ExitStack() as stack:
            # Probe as an unprivileged uid, like real runs: root may create namespaces
            # where unprivileged users may not.
            if identity.can_switch_credentials():
                lease = identity.lease_uid()
                stack.callback(lease.release)
                stack.enter_context(identity.thread_credentials(lease.uid, lease.gid))
            done = subprocess.run(args, capture_output=True, timeout=30, cwd="/", env={})
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not be started: {exc}"
    if done.returncode == 0:
        return None
    err = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
    hint = ""
    if "namespace" in err.lower() or "permission" in err.lower():
        hint = (
            " (unprivileged user namespaces look disabled: check the sysctls"
            " kernel.unprivileged_userns_clone, user.max_user_namespaces and"
            " kernel.apparmor_restrict_unprivileged_userns)"
        )
    return f"bwrap cannot create a sandbox here: {err}{hint}"
