"""Runs ``sdpo discover`` (``args.spec``, ``args.sft`` from ``cli/discover.py``'s ``prepare``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from ...jobs.discover.run import run_discovery
from ...jobs.sft import warm_started
from ..options import comma_list


def run(args: argparse.Namespace) -> int:
    spec = args.spec
    log = (lambda message: None) if args.quiet else print
    warm = None
    if args.sft is not None:
        model, warm = warm_started(args.sft, log=log, progress=args.progress)
        spec = dataclasses.replace(spec, model=model)
    out = Path(args.output_dir)
    summary = run_discovery(
        spec,
        comma_list(args.task),
        args.seeds,
        out,
        methods=args.methods,
        command=shlex.join(["sdpo", *args._argv]),
        warm_start_info=warm,
        log=log,
    )
    print((out / "report.md").read_text())
    return 0 if summary["units"] else 1
