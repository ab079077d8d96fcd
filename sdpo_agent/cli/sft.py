"""``sdpo sft``: warm-start a model on an environment's oracle demonstrations (cached)."""

from __future__ import annotations

import argparse

from ..jobs.sft import SFTSpec, warm_start
from .options import add_env_args, add_fields, fields_from, parse_pairs

SFT_FIELDS = (
    "env",
    "model",
    "tasks",
    "epochs",
    "learning_rate",
    "batch_size",
    "seed",
    "reprompt_demonstrations",
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, SFTSpec, SFT_FIELDS)
    parser.add_argument(
        "--output-dir", default=None, help="default: the cache (~/.cache/sdpo-gym/sft/<hash>)"
    )
    add_env_args(parser)


def spec_from_args(args: argparse.Namespace) -> SFTSpec:
    env_kwargs = tuple(sorted(parse_pairs(args.env_arg, "--env-arg").items()))
    return SFTSpec(**fields_from(args, SFT_FIELDS), env_kwargs=env_kwargs)


def run(args: argparse.Namespace) -> int:
    log = (lambda message: None) if args.quiet else print
    print(warm_start(spec_from_args(args), cache_dir=args.output_dir, log=log, progress=args.progress))
    return 0
