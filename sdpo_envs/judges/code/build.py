"""The harness as the sandbox's interpreter will run it: a zip of bytecode compiled once per backend.

Compiling the harness's source costs more CPU than everything else it does for a typical
solution, and a fresh sandbox has nowhere to keep a ``.pyc``. So the first judgement on a
backend runs one trusted probe in the sandbox that compiles each module of the harness
package with the sandbox's own interpreter and returns the marshalled code with that
interpreter's magic number (and its site-packages directories, so the harness need not
import ``site``). Later runs ship ``harness.zip``, stored uncompressed: the package as
``sdpo_harness/*.pyc`` and its ``__main__`` at the top, which loads the package and runs it
(see ``harness/__main__.py`` for why it loads the modules itself). If the probe fails the zip
holds the sources instead: slower (compiled on every run), same behaviour.

``python3 -S harness.zip`` runs the harness. The judge runs the zip's ``__main__`` through
``-c`` instead (``HarnessBuild.command``): running a zip as a script first imports ``runpy``,
and with it ``importlib.util``, ``contextlib``, ``collections`` and ``functools``, about 4.5 ms
of CPU per run.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ...sandbox import Limits, SandboxBackend

logger = logging.getLogger(__name__)

ARCHIVE = "harness.zip"
PACKAGE = "sdpo_harness"  # the harness package's name inside the zip
# What `python3 harness.zip` does, without runpy: run the zip's __main__ with the zip as argv[0].
_BOOTSTRAP = f"import sys, zipimport; sys.argv[0] = {ARCHIVE!r}; exec(zipimport.zipimporter({ARCHIVE!r}).get_code('__main__'))"

_PROBE = """\
import base64, json, marshal, sys
sources = json.loads(sys.stdin.read())
magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
try:
    import site
    site_dirs = site.getsitepackages()
except Exception:
    site_dirs = []
code = {name: base64.b64encode(marshal.dumps(compile(source, name, "exec", dont_inherit=True))).decode()
        for name, source in sources.items()}
sys.stdout.write(json.dumps({"magic": base64.b64encode(magic).decode(), "code": code, "site_dirs": site_dirs}))
"""


@dataclass(frozen=True)
class HarnessBuild:
    """What to ship: ``files`` for the run (the zip), and site dirs to pass on."""

    files: dict[str, str | bytes]
    site_dirs: tuple[str, ...] = ()
    compiled: bool = False

    def command(self, python: str) -> list[str]:
        """The command that starts the harness with ``python``, in the scratch dir holding ``files``."""
        return [python, "-S", "-c", _BOOTSTRAP]


@lru_cache(maxsize=1)
def harness_sources() -> dict[str, str]:
    """The zip's entries as source: the harness package's ``__main__.py`` at the top, its
    other modules under ``sdpo_harness/``."""
    sources = {}
    for entry in resources.files(__package__).joinpath("harness").iterdir():
        if entry.name.endswith(".py"):
            name = entry.name if entry.name == "__main__.py" else f"{PACKAGE}/{entry.name}"
            sources[name] = entry.read_text(encoding="utf-8")
    return dict(sorted(sources.items()))


def harness_zip(entries: Mapping[str, bytes]) -> bytes:
    """A zip of ``entries``, stored (zipimport then needs no zlib) with fixed dates: the same
    entries make the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


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
    sources = harness_sources()
    fallback = HarnessBuild(files={ARCHIVE: harness_zip({n: s.encode() for n, s in sources.items()})})
    try:
        result = backend.run(
            [backend.python, "-S", "-c", _PROBE],
            stdin=json.dumps(sources),
            limits=Limits(cpu_s=10, wall_s=30, memory_mb=512, output_bytes=4 << 20),
        )
        if result.status != "ok":
            raise RuntimeError(f"{result.status}: {result.detail or result.stderr[-300:]}")
        payload = json.loads(result.stdout)
        magic = base64.b64decode(payload["magic"])
        code = {name: base64.b64decode(payload["code"][name]) for name in sources}
        site_dirs = tuple(str(d) for d in payload.get("site_dirs") or [])
    except Exception as exc:  # any failure: ship the source, which always works
        logger.warning(
            "could not precompile the code harness on %s (%s); shipping its source", backend.name, exc
        )
        return fallback
    if len(magic) != 4:
        return fallback
    # Header: magic, flags 0 (timestamp-based), then a source mtime and size that zipimport
    # compares only with a source in the zip, and there is none.
    entries = {name + "c": magic + bytes(12) + data for name, data in code.items()}
    return HarnessBuild(files={ARCHIVE: harness_zip(entries)}, site_dirs=site_dirs, compiled=True)
