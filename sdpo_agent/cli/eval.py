"""``sdpo eval``: pass@1 and pass@k with confidence intervals on an env's held-out tasks.
The flags and their checks; ``runners/eval.py`` runs the evaluation."""

from __future__ import annotations

import argparse

from ..jobs.specs import EvalSpec
from .job_options import check_env
from .options import add_env_args, add_fields, add_judge_backend_flags, add_vllm_flag, build_spec, parse_pairs

EVAL_FIELDS = (
    "env",
    "model",
    "tasks",
    "samples",
    "k",
    "temperature",
    "max_completion_length",
    "max_turns",
    "seed",
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, EvalSpec, EVAL_FIELDS)
    add_env_args(parser)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    add_vllm_flag(parser)
    add_judge_backend_flags(parser)


def prepare(args: argparse.Namespace) -> None:
    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    spec = build_spec(
        EvalSpec,
        args,
        EVAL_FIELDS,
        env_kwargs=env_kwargs,
        use_vllm=args.use_vllm,
        judge_backend=args.judge_backend,
        ray_address=args.ray_address,
    )
    args.split = check_env(spec.env, spec.env_kwargs, spec.tasks, "--tasks")
    args.spec = spec
