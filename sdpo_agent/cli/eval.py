"""``sdpo eval``: pass@1 and pass@k with confidence intervals on an env's held-out tasks."""

from __future__ import annotations

import argparse
import json

from ..jobs.eval import EvalSpec, run_eval
from .options import (
    add_env_args,
    add_fields,
    add_judge_backend_flags,
    add_vllm_flag,
    fields_from,
    parse_pairs,
)

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


def run(args: argparse.Namespace) -> int:
    spec = EvalSpec(
        **fields_from(args, EVAL_FIELDS),
        env_kwargs=parse_pairs(args.env_arg, "--env-arg"),
        use_vllm=args.use_vllm,
        judge_backend=args.judge_backend,
        ray_address=args.ray_address,
    )
    result, tasks = run_eval(spec, progress=args.progress)
    report = {"env": spec.env, "model": spec.model, **result.to_dict()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{spec.env} | {spec.model} | {tasks} held-out tasks x {spec.samples} samples")
    for k in result.ks:
        low, high = result.ci[k]
        print(f"  pass@{k:<3} {result.pass_at[k]:.3f}   95% CI [{low:.3f}, {high:.3f}]")
    print(
        f"  mean completion length {result.mean_length:.1f} tokens; judge errors {result.judge_error_rate:.1%}"
    )
    print("  verdicts: " + ", ".join(f"{v}={c}" for v, c in sorted(result.verdicts.items())))
    return 0
