"""The harness as the sandbox's interpreter will run it: bytecode compiled once per backend.

Compiling the harness's source costs more CPU than everything else it does for a typical
solution, and a fresh sandbox has nowhere to keep a ``.pyc``. So the first judgement on a
backend runs one trusted probe in the sandbox that compiles the harness with the sandbox's
own interpreter and returns the marshalled code with that interpreter's magic number (and
its site-packages directories, so the harness need not import ``site``). Later runs ship
``harness.pyc``, which CPython runs directly as a script. If the probe fails the source is
shipped instead: slower, same behaviour.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ...sandbox import Limits, SandboxBackend

logger = logging.getLogger(__name__)

_PROBE = """\
import base64, json, marshal, sys
source = sys.stdin.read()
magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
try:
    import site
    site_dirs = site.getsitepackages()
except Exception:
    site_dirs = []
code = marshal.dumps(compile(source, "harness.py", "exec", dont_inherit=True))
sys.stdout.write(json.dumps({"magic": base64.b64encode(magic).decode(), "code": base64.b64encode(code).decode(),
                             "site_dirs": site_dirs}))
"""


@dataclass(frozen=True)
class HarnessBuild:
    """What to ship: ``files`` for the run, the ``script`` to start, and site dirs to pass on."""

    files: dict[str, str | bytes]
    script: str
    site_dirs: tuple[str, ...] = ()
    compiled: bool = False


@lru_cache(maxsize=1)
def harness_source() -> str:
    """The harness script, shipped as package data and run inside the sandbox."""
    return resources.files(__package__).joinpath("harness.py").read_text(encoding="utf-8")


_builds: dict[tuple[str, str, int], HarnessBuild] = {}
_lock = threading.Lock()


def harness_for(backend: SandboxBackend) -> HarnessBuild:
    """The harness build for ``backend``'s interpreter (probed once per backend instance)."""
    key = (backend.name, backend.python, id(backend))
    with _lock:
        build = _builds.get(key)
    if build is None:
        build = _probe(backend)
        with _lock:
            build = _builds.setdefault(key, build)
    return build


def _probe(backend: SandboxBackend) -> HarnessBuild:
    source = harness_source()
    fallback = HarnessBuild(files={"harness.py": source}, script="harness.py")
    try:
        result = backend.run(
            [backend.python, "-S", "-c", _PROBE],
            stdin=source,
            limits=Limits(cpu_s=10, wall_s=30, memory_mb=512, output_bytes=4 << 20),
        )
        if result.status != "ok":
            raise RuntimeError(f"{result.status}: {result.detail or result.stderr[-300:]}")
        payload = json.loads(result.stdout)
        magic, code = base64.b64decode(payload["magic"]), base64.b64decode(payload["code"])
        site_dirs = tuple(str(d) for d in payload.get("site_dirs") or [])
    except Exception as exc:  # any failure: ship the source, which always works
        logger.warning(
            "could not precompile the code harness on %s (%s); shipping its source", backend.name, exc
        )
        return fallback
    if len(magic) != 4:
        return fallback
    # A .pyc run as a script is checked for its magic number only; the rest of the header is skipped.
    pyc = magic + bytes(12) + code
    return HarnessBuild(files={"harness.pyc": pyc}, script="harness.pyc", site_dirs=site_dirs, compiled=True)
