"""``sdpo sft``: warm-start a model on an environment's oracle demonstrations (cached).
The flags and their checks; ``runners/sft.py`` trains."""

from __future__ import annotations

import argparse

from ..jobs.specs import SFTSpec
from .job_options import check_env
from .options import add_env_args, add_fields, build_spec, parse_pairs

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
        "--output-dir",
        default=None,
        help="where the checkpoint goes (default: the cache, ~/.cache/sdpo-gym/sft/<hash>)",
    )
    add_env_args(parser)


def spec_from_args(args: argparse.Namespace) -> SFTSpec:
    env_kwargs = tuple(sorted(parse_pairs(args.env_arg, "--env-arg").items()))
    return build_spec(SFTSpec, args, SFT_FIELDS, env_kwargs=env_kwargs)


def prepare(args: argparse.Namespace) -> None:
    spec = spec_from_args(args)
    args.split = check_env(spec.env, dict(spec.env_kwargs), 0, "--env")
    args.spec = spec
