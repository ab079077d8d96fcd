"""The ``sdpo`` command line: one module per command, named as the command.

Each command module has ``configure(parser)`` and, where there is anything to check,
``prepare(args)``: both light (no torch, no transformers), so that every mistake in a command
is answered before the heavy job is imported, in a fraction of a second. The job then runs
through ``RUNNERS``, the one place where the command line imports a module by name; only the
chosen command's modules are imported. A mistake is answered with a one-line headline and its
detail lines (``errors``); ``--debug`` shows the traceback instead, ``--quiet`` hides progress
bars.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from .errors import Parser, debug_requested, report

# name -> one-line help; the module is sdpo_agent.cli.<name>.
COMMANDS: dict[str, str] = {
    "envs": "list the registered environments and their plugin status",
    "judge": "judge a solution to a code task in the sandbox and print the verdict and feedback",
    "train": "train with SDPO, GRPO, DAPO or Dr.GRPO on an environment",
    "eval": "evaluate a model: pass@k (unbiased estimator, bootstrap CI) on held-out tasks",
    "sft": "supervised warm start on oracle demonstrations (cached; RL runs then start from it)",
    "compare": "compare SDPO with RLVR baselines on the same env, seeds and budget (plots + report)",
    "discover": "test-time SDPO on single questions vs best-of-k and multi-turn retries (discovery@k report)",
    "serve": "serve an environment over OpenEnv's HTTP/WebSocket protocol, for OpenEnv clients",
}


# The single lazy dispatch point: command -> "module:function" that runs the validated command
# (``run(args) -> int``). Imported only after ``prepare`` accepted the arguments, because these
# modules load torch and transformers. tests/test_architecture.py reads this table and checks
# each target as an import of this package (layers one way, no cycles).
RUNNERS: dict[str, str] = {
    "envs": "sdpo_agent.cli.envs:run",
    "judge": "sdpo_agent.cli.judge:run",
    "train": "sdpo_agent.cli.runners.train:run",
    "eval": "sdpo_agent.cli.runners.eval:run",
    "sft": "sdpo_agent.cli.runners.sft:run",
    "compare": "sdpo_agent.cli.runners.compare:run",
    "discover": "sdpo_agent.cli.runners.discover:run",
    "serve": "sdpo_agent.cli.runners.serve:run",
}


def runner(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``command`` (its module imported now)."""
    module, _, function = RUNNERS[command].partition(":")
    return getattr(importlib.import_module(module), function)


def dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: the checked command as JSON (its job's spec and task split), nothing run."""
    spec = getattr(args, "spec", None)
    shown = {
        "command": args.command,
        "spec": dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else None,
        **getattr(args, "split", {}),
    }
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _chosen_command(argv: Sequence[str]) -> str | None:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def quiet_libraries() -> None:
    """No download/loading progress bars from transformers, datasets and huggingface_hub."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    # The chosen command's module imported these already, and they read the variables at import.
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def _global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks (also SDPO_DEBUG=1)"
    )
    parser.add_argument(
        "--quiet", action="store_true", default=default, help="no progress bars or per-step logs"
    )


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the options of the command ``argv`` names (only that one is imported)."""
    parser = Parser(prog="sdpo", description="sdpo-gym: verifiable text environments and SDPO trainers")
    _global_flags(parser, False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    chosen = _chosen_command(argv)
    for name, help_text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        _global_flags(sub, argparse.SUPPRESS)  # also accepted after the command
        if name == chosen:
            module = importlib.import_module(f"{__name__}.{name}")
            module.configure(sub)
            prepare = getattr(module, "prepare", None)
            if prepare is not None:
                sub.add_argument(
                    "--dry-run",
                    action="store_true",
                    help="check the whole command (flags, env, task split), print what would run, run nothing",
                )
            sub.set_defaults(_prepare=prepare, _parser=sub)
    parser.command_parsers = subparsers.choices  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdpo`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Results go to stdout (``--json``); vLLM's log lines go to stderr with every other log.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    try:
        parser = build_parser(argv)
        command = _chosen_command(argv)
        if command is not None:
            parser.command_parsers[command].check_flags(argv[argv.index(command) + 1 :])
        args, extras = parser.parse_known_args(argv)
        if extras:
            getattr(args, "_parser", parser).unknown_arguments(extras)
        args._argv = argv  # lets a command record the exact command line that reproduces it
        # Progress bars only on a terminal: in CI logs and files they are noise.
        args.progress = not args.quiet and sys.stderr.isatty()
        if args._prepare is not None:
            args._prepare(args)  # every check that needs no torch, before the job is imported
            if args.dry_run:
                return dry_run(args)
        if not args.progress:
            quiet_libraries()
        return int(runner(args.command)(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise  # --help, --version
    except BaseException as exc:  # every failure ends in one line (or a traceback with --debug)
        return report(exc, debug_requested(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
