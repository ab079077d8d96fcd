"""Runs ``sdpo train`` (``args.spec`` from ``cli/train.py``'s ``prepare``)."""

from __future__ import annotations

import argparse
import json

from ...jobs.train import run_job


def run(args: argparse.Namespace) -> int:
    summary = run_job(args.spec)
    last = summary["heldout"][-1] if summary["heldout"] else {}
    print(json.dumps({"output_dir": args.spec.output_dir, "final_heldout": last}, indent=2, default=float))
    return 0
