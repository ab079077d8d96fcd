"""``sdpo train``: SDPO or an RLVR baseline on an environment, with held-out evaluation."""

from __future__ import annotations

import argparse
import json

from .options import add_job_flags, job_kwargs

HELP = "train with SDPO, GRPO, DAPO or Dr.GRPO on an environment"


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_flags(parser)
    parser.add_argument("--algorithm", default="sdpo", choices=("sdpo", "grpo", "dapo", "dr_grpo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="default: runs/<env>-<algorithm>-s<seed>")
    parser.set_defaults(_parser=parser)


def run(args: argparse.Namespace) -> int:
    from ..jobs.train import JobSpec, run_job

    kwargs = job_kwargs(args)
    out = args.output_dir or f"runs/{kwargs['env'].replace('/', '_')}-{args.algorithm}-s{args.seed}"
    spec = JobSpec(algorithm=args.algorithm, seed=args.seed, output_dir=out, **kwargs)
    summary = run_job(spec)
    last = summary["heldout"][-1] if summary["heldout"] else {}
    print(json.dumps({"output_dir": out, "final_heldout": last}, indent=2, default=float))
    return 0
