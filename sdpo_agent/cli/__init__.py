"""The ``sdpo`` command line.

Each subcommand is a module of ``sdpo_agent.commands`` with ``HELP`` (one line),
``configure(parser)`` and ``run(args) -> int``. Command modules import nothing heavy at
module level (no torch, no transformers): ``sdpo judge`` and ``sdpo envs`` start fast, and
the training commands load their stack inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module; later commands (train, eval, compare) register here.
COMMANDS: dict[str, str] = {
    "envs": "sdpo_agent.cli.envs",
    "judge": "sdpo_agent.cli.judge",
    "train": "sdpo_agent.cli.train",
    "eval": "sdpo_agent.cli.eval",
    "sft": "sdpo_agent.cli.sft",
    "compare": "sdpo_agent.cli.compare",
    "discover": "sdpo_agent.cli.discover",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdpo", description="sdpo-gym: verifiable text environments and SDPO trainers"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdpo`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv  # lets a command record the exact command line that reproduces it
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
