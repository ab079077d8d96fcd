"""``sdpo compare``: algorithms × seeds on one env, with plots and a Markdown report."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from ..jobs.compare import run_comparison
from ..jobs.sft import warm_started
from ..jobs.train import ALGORITHMS
from .errors import UsageError, did_you_mean
from .job_options import add_job_options, add_warm_start_options, job_spec, warm_start_spec
from .options import comma_list


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_options(parser)
    parser.add_argument("--algorithms", default="sdpo,grpo", help=f"comma-separated: {', '.join(ALGORITHMS)}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--output-dir", default="runs/compare")
    add_warm_start_options(parser, "all runs")


def run(args: argparse.Namespace) -> int:
    algorithms = comma_list(args.algorithms)
    for name in algorithms:
        if name not in ALGORITHMS:
            raise UsageError(
                f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)} (choose from {', '.join(ALGORITHMS)})"
            )
    if not algorithms:
        raise UsageError(f"--algorithms is empty; choose from {', '.join(ALGORITHMS)}")
    seeds = [int(s) for s in comma_list(args.seeds)]
    base = job_spec(args, output_dir=args.output_dir, quiet=not args.progress)
    log = (lambda message: None) if args.quiet else print
    warm = None
    if args.warm_start:
        sft = warm_start_spec(args, base.env, base.model, base.env_kwargs)
        model, warm = warm_started(sft, log=log, progress=args.progress)
        base = dataclasses.replace(base, model=model)
    command = shlex.join(["sdpo", *args._argv])
    summary = run_comparison(
        base, algorithms, seeds, Path(args.output_dir), command=command, warm_start_info=warm, log=log
    )
    print((Path(args.output_dir) / "report.md").read_text())
    return 0 if summary["algorithms"] else 1
