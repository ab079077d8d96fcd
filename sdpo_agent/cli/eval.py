"""``sdpo eval``: pass@1 and pass@k with confidence intervals on an env's held-out tasks."""

from __future__ import annotations

import argparse
import json

from .options import add_vllm_flag, parse_pairs

HELP = "evaluate a model: pass@k (unbiased estimator, bootstrap CI) on held-out tasks"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tasks", type=int, default=32, help="held-out tasks to evaluate")
    parser.add_argument("--samples", type=int, default=8, help="samples per task (n)")
    parser.add_argument("--k", default="1,8", help="comma-separated k values (each <= samples)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-completion-length", type=int, default=256)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    add_vllm_flag(parser)


def run(args: argparse.Namespace) -> int:
    from sdpo_envs import make_env_factory

    from ..jobs.evaluate import evaluate_env
    from ..models.resolve import resolve_model
    from ..rollout.task_rows import split_indices

    ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    factory = make_env_factory(args.env, **parse_pairs(args.env_arg, "--env-arg"))
    _, held_out = split_indices(factory(), args.tasks)
    model, tokenizer = resolve_model(args.model)
    result = evaluate_env(
        model,
        tokenizer,
        factory,
        held_out,
        n=args.samples,
        ks=ks,
        temperature=args.temperature,
        max_completion_length=args.max_completion_length,
        max_turns=args.max_turns,
        seed=args.seed,
        use_vllm=args.use_vllm,
    )
    report = {"env": args.env, "model": args.model, **result.to_dict()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.env} | {args.model} | {len(held_out)} held-out tasks x {args.samples} samples")
    for k in result.ks:
        low, high = result.ci[k]
        print(f"  pass@{k:<3} {result.pass_at[k]:.3f}   95% CI [{low:.3f}, {high:.3f}]")
    print(
        f"  mean completion length {result.mean_length:.1f} tokens; judge errors {result.judge_error_rate:.1%}"
    )
    print("  verdicts: " + ", ".join(f"{v}={c}" for v, c in sorted(result.verdicts.items())))
    return 0
