"""Validating the ``files`` a run places in its scratch directory."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping


def normalize_files(files: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    """Relative path -> content bytes; rejects paths that could leave the scratch dir.

    Raises ``ValueError`` for absolute paths, ``..``, empty names or NUL bytes.
    """
    out: dict[str, bytes] = {}
    for name, content in (files or {}).items():
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"invalid sandbox file name {name!r}")
        norm = posixpath.normpath(name)
        if norm.startswith("/") or norm == "." or norm.split("/")[0] == "..":
            raise ValueError(f"sandbox file {name!r} must be a relative path inside the scratch dir")
        out[norm] = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return out


def parent_dirs(paths: list[str]) -> list[str]:
    """Every directory the relative ``paths`` need, parents first."""
    dirs: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def as_bytes(data: str | bytes | None) -> bytes:
    if data is None:
        return b""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)
