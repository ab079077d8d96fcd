"""``sdpo sft``: warm-start a model on an environment's oracle demonstrations (cached)."""

from __future__ import annotations

import argparse

from .options import parse_pairs

HELP = "supervised warm start on oracle demonstrations (cached; RL runs then start from it)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tasks", type=int, default=256, help="oracle demonstrations")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", default=None, help="default: the cache (~/.cache/sdpo-gym/sft/<hash>)"
    )
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")


def spec_from_args(args: argparse.Namespace):
    from ..jobs.sft import SFTSpec

    env_kwargs = tuple(sorted(parse_pairs(args.env_arg, "--env-arg").items()))
    return SFTSpec(
        env=args.env,
        model=args.model,
        tasks=args.tasks,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        env_kwargs=env_kwargs,
    )


def run(args: argparse.Namespace) -> int:
    from ..jobs.sft import warm_start

    path = warm_start(spec_from_args(args), cache_dir=args.output_dir)
    print(path)
    return 0
