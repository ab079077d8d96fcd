"""Runs ``sdpo compare`` (``args.spec``, ``args.sft`` from ``cli/compare.py``'s ``prepare``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from ...jobs.compare import run_comparison
from ...jobs.sft import warm_started


def run(args: argparse.Namespace) -> int:
    base = args.spec
    log = (lambda message: None) if args.quiet else print
    warm = None
    if args.sft is not None:
        model, warm = warm_started(args.sft, log=log, progress=args.progress)
        base = dataclasses.replace(base, model=model)
    command = shlex.join(["sdpo", *args._argv])
    summary = run_comparison(
        base,
        args.algorithms,
        args.seeds,
        Path(args.output_dir),
        command=command,
        warm_start_info=warm,
        log=log,
    )
    print((Path(args.output_dir) / "report.md").read_text())
    return 0 if summary["algorithms"] else 1
