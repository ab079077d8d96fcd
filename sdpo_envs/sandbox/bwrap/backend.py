"""The ``bwrap`` backend: bubblewrap namespaces + cgroups + rlimits (the local default).

The sandbox sees ``/usr`` read-only (plus the ``/bin``, ``/lib*`` symlinks), a fresh
``/proc`` and a minimal read-only ``/dev``, a size-limited tmpfs scratch dir (the cwd, holding
``files``) and a private ``/tmp``; the root is read-only. No ``/etc``, no home, no project
tree, no network. Files and stdin go in through memfds, so no host directory is made.

Per run it costs one ``bwrap`` exec and nothing else: the uid switch and the network
namespace are entered by the spawning thread (``identity``), rlimits and cgroups are
applied to the sandbox's pid 1 while it waits (``bwrap_run``), and uid, cgroups and network
namespace are made once per concurrent slot (``slots``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from functools import partial

from .. import identity
from ..base import ExecResult, Isolation, Limits, SandboxBackend, SandboxUnavailable
from ..files import as_bytes, normalize_files
from . import host as bwrap_host
from . import site_check, slots
from .host import SANDBOX_PATH
from .run import BwrapRun, SetupFailed

logger = logging.getLogger(__name__)

_probe_lock = threading.Lock()
_probe_cache: list[str | None] = []


class BwrapBackend(SandboxBackend):
    """Bubblewrap sandbox; thread-safe, one slot per concurrent ``run``.

    ``fresh_netns=True``: a new network namespace per run instead of the slot's own empty
    one (~1.3 ms more per run). ``mount_proc=False``: no ``/proc``. ``skip_site=True``: run
    ``python -S`` when ``site_check`` proves the program does not need ``site`` (~3 ms less
    interpreter start-up; reported in ``ExecResult.extra["python_flags"]``).
    """

    name = "bwrap"
    trusted_isolation = True

    def __init__(self, *, fresh_netns: bool = False, mount_proc: bool = True, skip_site: bool = True) -> None:
        reason = self.probe()
        if reason is not None:
            raise SandboxUnavailable(reason)
        self._python, _prefix = bwrap_host.sandbox_python()
        slot_netns = not fresh_netns and identity.can_use_netns()
        bwrap = bwrap_host.find_bwrap() or "bwrap"
        self._static_args = bwrap_host.static_args(bwrap, share_net=slot_netns, mount_proc=mount_proc)
        self._skip_site = skip_site
        factory = partial(slots.new_slot, switch_uid=identity.can_switch_credentials(), netns=slot_netns)
        self._pool = slots.SlotPool(factory)
        weakref.finalize(self, self._pool.close)  # also runs at interpreter exit

    @classmethod
    def probe(cls) -> str | None:
        with _probe_lock:
            if not _probe_cache:
                _probe_cache.append(bwrap_host.probe())
            return _probe_cache[0]

    @property
    def python(self) -> str:
        return self._python

    def close(self) -> None:
        self._pool.close()

    def run(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, str | bytes] | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        limits = limits or Limits()
        start = time.monotonic()
        try:
            checked = normalize_files(files)
            self._check_argv(argv, checked)
            final_argv = self._fast_argv(argv, checked)
            slot = self._pool.acquire()
        except (ValueError, OSError) as exc:
            return self._error(limits, start, f"could not prepare the run: {exc}")
        try:
            return BwrapRun(self._static_args, slot, limits, start).execute(
                final_argv, checked, as_bytes(stdin), env
            )
        except SetupFailed as exc:
            return self._error(limits, start, f"bwrap could not set up the sandbox: {exc}")
        except Exception as exc:  # a failure of ours, never of the program
            logger.exception("bwrap sandbox failed")
            return self._error(limits, start, f"sandbox failure: {type(exc).__name__}: {exc}")
        finally:
            self._pool.release(slot)

    def _check_argv(self, argv: Sequence[str], files: Mapping[str, bytes]) -> None:
        """Refuse a program that cannot exist in the sandbox before starting anything, so a
        missing program never looks like the submitted code failing (or the reverse)."""
        if not argv:
            raise ValueError("empty argv")
        prog = argv[0]
        if "/" not in prog:
            if shutil.which(prog, path=SANDBOX_PATH) is None:
                raise ValueError(f"{prog!r} is not on the sandbox PATH ({SANDBOX_PATH})")
        elif prog.startswith("/"):
            visible = prog.startswith(("/usr/", "/bin/", "/sbin/", "/lib")) or prog == self._python
            if not visible or not os.access(prog, os.X_OK):
                raise ValueError(f"{prog!r} is not an executable visible in the sandbox")
        elif os.path.normpath(prog) not in files:
            raise ValueError(f"{prog!r} is not one of the run's files")

    def _fast_argv(self, argv: Sequence[str], files: Mapping[str, bytes]) -> list[str]:
        """``[python, "-S", ...]`` when the program provably does not need ``site``."""
        argv = list(argv)
        if not self._skip_site or len(argv) < 2 or argv[0] != self._python:
            return argv
        try:
            if argv[1] == "-c" and len(argv) > 2:
                sources = [argv[2]]
            elif argv[1] in files and argv[1].endswith(".py"):
                sources = [data.decode("utf-8") for path, data in files.items() if path.endswith(".py")]
            else:
                return argv
        except UnicodeDecodeError:
            return argv
        local = {path.split("/")[0].removesuffix(".py") for path in files}
        if site_check.needs_site(sources, local):
            return argv
        return [argv[0], "-S", *argv[1:]]

    def _error(self, limits: Limits, start: float, detail: str) -> ExecResult:
        return ExecResult(
            status="sandbox_error",
            exit_code=None,
            stdout="",
            stderr="",
            cpu_s=0.0,
            wall_s=time.monotonic() - start,
            peak_memory_mb=None,
            isolation=Isolation(self.name, (), ("the sandbox did not run",)),
            detail=detail,
        )
