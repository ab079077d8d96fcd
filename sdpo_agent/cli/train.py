"""``sdpo train``: SDPO or an RLVR baseline on an environment, with held-out evaluation."""

from __future__ import annotations

import argparse
import json

from ..jobs.train import ALGORITHMS, JobSpec, run_job
from .job_options import add_job_options, job_spec


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_options(parser)
    parser.add_argument("--algorithm", default="sdpo", choices=ALGORITHMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="default: runs/<env>-<algorithm>-s<seed>")


def run(args: argparse.Namespace) -> int:
    spec: JobSpec = job_spec(args, algorithm=args.algorithm, seed=args.seed, quiet=not args.progress)
    out = args.output_dir or f"runs/{spec.env.replace('/', '_')}-{args.algorithm}-s{args.seed}"
    spec.output_dir = out
    summary = run_job(spec)
    last = summary["heldout"][-1] if summary["heldout"] else {}
    print(json.dumps({"output_dir": out, "final_heldout": last}, indent=2, default=float))
    return 0
