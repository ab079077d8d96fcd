"""The sandbox image of the ``docker`` backend, built locally without any registry.

The image is a tiny root filesystem generated here with ``tarfile`` and loaded with
``docker import``: empty mount points (``/usr``, ``/proc``, ``/dev``, ``/sys``, ``/tmp``,
``/work/run``), ``/bin``, ``/sbin``, ``/lib`` and ``/lib64`` as symlinks into ``usr``, an
``/etc`` with ``passwd``/``group`` entries for the unprivileged sandbox user (65534) and the
host's ``ld.so.cache``, and the in-container supervisor package at ``/sdpo/supervisor/``. At run
time the host's ``/usr`` is bind-mounted read-only, so ``/usr/bin/python3`` is the host's
interpreter. The tag is a hash of the tar, so the image is built once per content and
rebuilt only when the supervisor (or the host's linker cache) changes.

Nothing here imports ``docker``: the client is passed in.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path
from typing import Any

REPOSITORY = "sdpo-sandbox"
SANDBOX_UID = 65534
SANDBOX_GID = 65534
SANDBOX_PYTHON = "/usr/bin/python3"
SUPERVISOR_DIR = "/sdpo/supervisor"
# -I leaves the script's directory off sys.path, so the package's parent goes on it by hand.
SUPERVISOR_COMMAND = [
    SANDBOX_PYTHON,
    "-I",
    "-S",
    "-c",
    "import sys; sys.path.insert(0, '/sdpo'); from supervisor.main import main; sys.exit(main())",
]

_PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sdpo sandbox:/work/run:/usr/sbin/nologin\n"
)
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n"
_HOST_FILES = ("/etc/ld.so.cache",)  # copied when present: library lookups match the host's /usr
_lock = threading.Lock()


def _supervisor_sources() -> dict[str, bytes]:
    package = Path(__file__).with_name("supervisor")
    return {path.name: path.read_bytes() for path in sorted(package.glob("*.py"))}


def rootfs_tar() -> bytes:
    """The image's root filesystem as a deterministic tar (same inputs, same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for directory in ("dev", "etc", "proc", "sdpo", "sdpo/supervisor", "sys", "usr", "work"):
            add(directory, tarfile.DIRTYPE, 0o755)
        add("work/run", tarfile.DIRTYPE, 0o755)  # mount point of the scratch tmpfs
        add("tmp", tarfile.DIRTYPE, 0o1777)
        for link in ("bin", "lib", "lib64", "sbin"):
            add(link, tarfile.SYMTYPE, 0o777, link=f"usr/{link}")
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
        add("etc/hostname", tarfile.REGTYPE, 0o644, b"sandbox\n")
        for host_file in _HOST_FILES:
            path = Path(host_file)
            if path.is_file():
                add(host_file.lstrip("/"), tarfile.REGTYPE, 0o644, path.read_bytes())
        for name, source in _supervisor_sources().items():
            add(f"{SUPERVISOR_DIR.lstrip('/')}/{name}", tarfile.REGTYPE, 0o644, source)
    return buffer.getvalue()


def image_tag(tar: bytes | None = None) -> str:
    digest = hashlib.sha256(rootfs_tar() if tar is None else tar).hexdigest()[:16]
    return f"{REPOSITORY}:{digest}"


def ensure_image(client: Any) -> str:
    """Return the tag of the sandbox image, importing it into the engine if it is missing.

    ``client`` is a ``docker.DockerClient``. Building is a ``docker import`` of
    :func:`rootfs_tar` (no registry, no Dockerfile, no network); an existing image with the
    same content hash is reused.
    """
    import docker.errors

    tar = rootfs_tar()
    tag = image_tag(tar)
    with _lock:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        repository, _, version = tag.partition(":")
        client.api.import_image_from_data(tar, repository=repository, tag=version)
        client.images.get(tag)  # raises if the import did not produce it
        return tag
