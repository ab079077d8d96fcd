"""How the command line answers a mistake: one line, ``sdpo: error: <what, and what to do>``,
exit status 2; a traceback only with ``--debug`` (or ``SDPO_DEBUG=1``)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Iterable
from typing import NoReturn

import gymnasium as gym
import yaml

USAGE_STATUS = 2
FAILURE_STATUS = 1


class UsageError(Exception):
    """A mistake in what was asked; the message says what was wrong and what to do."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line (``UsageError``) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("sdpo").strip()
        hint = f"`sdpo {command} --help`" if command else "`sdpo --help`"
        if "invalid choice" in message and "argument COMMAND" in message:
            word = message.split("'")[1]
            message = f"unknown command {word!r}{did_you_mean(word, self._commands())}"
        raise UsageError(f"{message} (see {hint})")

    def _commands(self) -> list[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []


# Exceptions that come from what the user asked for (a file, an id, a value), not from a bug.
USER_MISTAKES: tuple[type[BaseException], ...] = (
    UsageError,
    ValueError,
    OSError,  # missing files and models (ModelNotAvailableError is an OSError)
    ImportError,  # an optional engine the user asked for (vLLM) is not installed
    yaml.YAMLError,
    gym.error.Error,
)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split()) or type(exc).__name__
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {getattr(exc, 'problem', None) or text}"
    if isinstance(exc, (KeyError,)) and exc.args:
        return str(exc.args[0])
    return text


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("SDPO_DEBUG", "") not in ("", "0")


def report(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as the one-line answer and return the exit status."""
    if debug:
        raise exc
    if isinstance(exc, USER_MISTAKES):
        print(f"sdpo: error: {one_line(exc)}", file=sys.stderr)
        return USAGE_STATUS
    print(
        f"sdpo: error: {type(exc).__name__}: {one_line(exc)} (a fault of sdpo-gym, not of the command: "
        "rerun with --debug for the traceback and report it)",
        file=sys.stderr,
    )
    return FAILURE_STATUS
