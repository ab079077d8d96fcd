"""``sdpo discover``: test-time SDPO on single hard questions against best-of-k and retries."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..jobs.discover.run import run_discovery
from ..jobs.discover.spec import METHODS, DiscoverySpec
from ..jobs.sft import warm_started
from .job_options import add_warm_start_options, warm_start_spec
from .options import (
    add_env_args,
    add_fields,
    add_set_flag,
    add_vllm_flag,
    comma_list,
    config_overrides,
    fields_from,
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
    parser.add_argument("--output-dir", default="runs/discover")
    add_env_args(parser)
    add_set_flag(parser, "SDPOConfig")
    add_warm_start_options(parser, "every method")
    add_vllm_flag(parser)


def run(args: argparse.Namespace) -> int:
    values = fields_from(args, DISCOVERY_FIELDS)
    log = (lambda message: None) if args.quiet else print
    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    warm = None
    if args.warm_start:
        sft = warm_start_spec(args, args.env, args.model, env_kwargs)
        values["model"], warm = warm_started(sft, log=log, progress=args.progress)
    spec = DiscoverySpec(**values, env_kwargs=env_kwargs, sdpo_overrides=config_overrides(args))
    seeds = [int(s) for s in comma_list(args.seeds)]
    command = shlex.join(["sdpo", *args._argv])
    out = Path(args.output_dir)
    summary = run_discovery(
        spec,
        comma_list(args.task),
        seeds,
        out,
        methods=comma_list(args.methods),
        command=command,
        warm_start_info=warm,
        log=log,
    )
    print((out / "report.md").read_text())
    return 0 if summary["units"] else 1
