"""``sdpo train``: SDPO or an RLVR baseline on an environment, with held-out evaluation.
The flags and their checks; ``runners/train.py`` runs the job."""

from __future__ import annotations

import argparse

from ..jobs.specs import ALGORITHMS
from .job_options import add_job_options, check_env, job_spec


def configure(parser: argparse.ArgumentParser) -> None:
    add_job_options(parser)
    parser.add_argument("--algorithm", default="sdpo", choices=ALGORITHMS, help="the training algorithm")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of sampling, shuffling and the held-out split"
    )
    parser.add_argument(
        "--output-dir", default=None, help="where the run writes (default: runs/<env>-<algorithm>-s<seed>)"
    )


def prepare(args: argparse.Namespace) -> None:
    spec = job_spec(args, algorithm=args.algorithm, seed=args.seed, quiet=not args.progress)
    spec.output_dir = args.output_dir or f"runs/{spec.env.replace('/', '_')}-{args.algorithm}-s{args.seed}"
    args.split = check_env(spec.env, spec.env_kwargs, spec.eval_tasks, "--eval-tasks")
    args.spec = spec
