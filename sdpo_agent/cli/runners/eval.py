"""Runs ``sdpo eval`` (``args.spec`` from ``cli/eval.py``'s ``prepare``)."""

from __future__ import annotations

import argparse
import json

from ...jobs.eval import run_eval


def run(args: argparse.Namespace) -> int:
    spec = args.spec
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
