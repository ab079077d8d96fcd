"""Runs ``sdpo sft`` (``args.spec`` from ``cli/sft.py``'s ``prepare``)."""

from __future__ import annotations

import argparse

from ...jobs.sft import warm_start


def run(args: argparse.Namespace) -> int:
    log = (lambda message: None) if args.quiet else print
    print(warm_start(args.spec, cache_dir=args.output_dir, log=log, progress=args.progress))
    return 0
