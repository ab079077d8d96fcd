"""``sdpo compare``: algorithms × seeds on one env, with plots and a Markdown report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .options import add_job_flags, job_kwargs

HELP = "compare SDPO with RLVR baselines on the same env, seeds and budget (plots + report)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_flags(parser)
    parser.add_argument(
        "--algorithms", default="sdpo,grpo", help="comma-separated: sdpo, grpo, dapo, dr_grpo"
    )
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--output-dir", default="runs/compare")
    parser.add_argument(
        "--warm-start", action="store_true", help="first run `sdpo sft` (cached) and start all runs from it"
    )
    parser.add_argument("--sft-tasks", type=int, default=256)
    parser.add_argument("--sft-epochs", type=float, default=2.0)
    parser.add_argument("--sft-learning-rate", type=float, default=5e-5)
    parser.set_defaults(_parser=parser)


def run(args: argparse.Namespace) -> int:
    import json

    from ..jobs.compare import run_comparison
    from ..jobs.train import ALGORITHMS, JobSpec

    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in algorithms if a not in ALGORITHMS]
    if bad or not algorithms:
        raise SystemExit(f"unknown algorithm(s) {bad}; choose from {ALGORITHMS}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    kwargs = job_kwargs(args)
    warm = None
    if args.warm_start:
        from ..jobs.sft import SFTSpec, warm_start

        spec = SFTSpec(
            env=kwargs["env"],
            model=kwargs["model"],
            tasks=args.sft_tasks,
            epochs=args.sft_epochs,
            learning_rate=args.sft_learning_rate,
            env_kwargs=tuple(sorted(kwargs["env_kwargs"].items())),
        )
        path = warm_start(spec)
        warm = {**json.loads((path / "sft.json").read_text()), "path": str(path)}
        kwargs["model"] = str(path)
    base = JobSpec(output_dir=args.output_dir, **kwargs)
    command = shlex.join(["sdpo", *getattr(args, "_argv", sys.argv[1:])])
    summary = run_comparison(
        base, algorithms, seeds, Path(args.output_dir), command=command, warm_start_info=warm
    )
    print((Path(args.output_dir) / "report.md").read_text())
    return 0 if summary["algorithms"] else 1
