"""``sdpo discover``: test-time SDPO on single hard questions against best-of-k and retries.
The flags and their checks; ``runners/discover.py`` runs the methods."""

from __future__ import annotations

import argparse

from sdpo_envs import make_env_factory

from ..jobs.discover.questions import resolve_tasks
from ..jobs.discover.spec import METHODS, DiscoverySpec
from .errors import UsageError, did_you_mean
from .job_options import add_warm_start_options, check_env, warm_start_spec
from .options import (
    add_env_args,
    add_fields,
    add_set_flag,
    add_vllm_flag,
    build_spec,
    comma_list,
    config_overrides,
    int_list,
    parse_pairs,
)

DISCOVERY_FIELDS = (
    "env",
    "model",
    "budget",
    "group_size",
    "topk",
    "learning_rate",
    "max_completion_length",
    "temperature",
    "retry_window_tokens",
    "best_of_samples",
    "stop_at_first_success",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        required=True,
        help="task id or index; several comma-separated (an exact id wins over an index)",
    )
    add_fields(parser, DiscoverySpec, DISCOVERY_FIELDS)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (one chain each)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--output-dir", default="runs/discover", help="where the chains and the report go")
    add_env_args(parser)
    add_set_flag(parser, "SDPOConfig")
    add_warm_start_options(parser, "every method")
    add_vllm_flag(parser)


def prepare(args: argparse.Namespace) -> None:
    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    args.spec = build_spec(
        DiscoverySpec, args, DISCOVERY_FIELDS, env_kwargs=env_kwargs, sdpo_overrides=config_overrides(args)
    )
    args.seeds = int_list(args.seeds, "--seeds")
    args.methods = comma_list(args.methods)
    if not args.methods:
        raise UsageError(f"--methods is empty; choose from {', '.join(METHODS)}")
    for name in args.methods:
        if name not in METHODS:
            raise UsageError(
                f"unknown method {name!r}{did_you_mean(name, METHODS)} (choose from {', '.join(METHODS)})"
            )
    args.split = check_env(args.spec.env, env_kwargs, 0, "--env")
    try:
        args.split["questions"] = resolve_tasks(
            make_env_factory(args.spec.env, **env_kwargs)(), comma_list(args.task)
        )
    except ValueError as exc:
        raise UsageError(f"--task: {exc}") from None
    args.sft = warm_start_spec(args, args.env, args.model, env_kwargs) if args.warm_start else None
