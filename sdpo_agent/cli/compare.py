"""``sdpo compare``: algorithms × seeds on one env, with plots and a Markdown report.
The flags and their checks; ``runners/compare.py`` runs the comparison."""

from __future__ import annotations

import argparse

from ..jobs.specs import ALGORITHMS
from .errors import UsageError, did_you_mean
from .job_options import add_job_options, add_warm_start_options, check_env, job_spec, warm_start_spec
from .options import comma_list, int_list


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_options(parser)
    parser.add_argument("--algorithms", default="sdpo,grpo", help=f"comma-separated: {', '.join(ALGORITHMS)}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--output-dir", default="runs/compare", help="where the runs and the report go")
    add_warm_start_options(parser, "all runs")


def prepare(args: argparse.Namespace) -> None:
    args.algorithms = comma_list(args.algorithms)
    for name in args.algorithms:
        if name not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)} (choose from {', '.join(ALGORITHMS)})"
            )
    if not args.algorithms:
        raise UsageError(f"--algorithms is empty; choose from {', '.join(ALGORITHMS)}")
    args.seeds = int_list(args.seeds, "--seeds")
    args.spec = job_spec(args, output_dir=args.output_dir, quiet=not args.progress)
    args.split = check_env(args.spec.env, args.spec.env_kwargs, args.spec.eval_tasks, "--eval-tasks")
    args.sft = (
        warm_start_spec(args, args.spec.env, args.spec.model, args.spec.env_kwargs)
        if args.warm_start
        else None
    )
