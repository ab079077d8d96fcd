"""How the command line answers a mistake: a one-line headline, ``sdpo: error: <what, and what
to do>``, with the message's detail lines (what was tried, the command's usage) under it, exit
status 2; a traceback only with ``--debug`` (or ``SDPO_DEBUG=1``)."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import gymnasium as gym
import yaml

_NUMBER = re.compile(r"-\d+(\.\d*)?([eE][-+]?\d+)?")  # a negative value, not a flag
USAGE_STATUS = 2
FAILURE_STATUS = 1


class UsageError(ValueError):
    """A mistake in what was asked; the message says what was wrong and what to do (its first
    line is the headline, further lines the detail)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line (``UsageError``) instead of usage + exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def _add_action(self, action: argparse.Action) -> argparse.Action:
        if action.help is None and action.option_strings:
            action.help = action.dest.replace("_", " ")  # argparse hides an option with no help, default too
        return super()._add_action(action)

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and "argument COMMAND" in message:
            word = message.split("'")[1]
            message = f"unknown command {word!r}{did_you_mean(word, self._commands())}"
        raise UsageError(f"{message} (see {self.help_hint()})")

    def help_hint(self) -> str:
        command = self.prog.removeprefix("sdpo").strip()
        return f"`sdpo {command} --help`" if command else "`sdpo --help`"

    def check_flags(self, words: Sequence[str]) -> None:
        """Answer an unknown flag before anything else (a missing required flag included): a
        typo is the likelier mistake, and the answer names the flag that was meant."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        for word in words:
            if word == "--":
                return
            name = word.split("=", 1)[0]
            if not name.startswith("-") or name == "-" or _NUMBER.fullmatch(name):
                continue
            if name not in flags and not any(
                flag.startswith(name) for flag in flags if flag.startswith("--")
            ):
                self.unknown_arguments([name])

    def unknown_arguments(self, extras: list[str]) -> NoReturn:
        """The answer to flags this command does not have: the nearest flag, then its usage."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        unknown = [word for word in extras if word.startswith("-")] or extras
        word = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(word, flags, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        what = "unrecognized argument" if word.startswith("-") else "unexpected argument"
        raise UsageError(f"{what} {word}{hint} (see {self.help_hint()})\n{self.format_usage().rstrip()}")

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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default, with its unit (``(default: 128 tokens)``):
    applies to each flag of every command, those added later included."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if not action.option_strings or "default:" in help_text or action.help == argparse.SUPPRESS:
            return help_text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return help_text
        if action.required:
            return f"{help_text} (required)".lstrip()
        return f"{help_text} (default: {show_default(action)})".lstrip()


def show_default(action: argparse.Action) -> str:
    """An option's default as a reader writes it: ``off``, ``none``, ``1e-05``, ``128 tokens``."""
    default = action.default
    if isinstance(action, argparse._StoreTrueAction):
        return "on" if default not in (False, argparse.SUPPRESS) else "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "off" if default is False else "on"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if default else "off"
    if default is None:
        return "none"
    if isinstance(default, list):
        return "none" if not default else ", ".join(map(str, default))
    unit = getattr(action, "unit", None)
    text = str(default).replace("%", "%%")
    return f"{text} {unit}" if unit else text


def headline(exc: BaseException) -> str:
    """The first line of ``exc``'s message (YAML errors as where + what)."""
    text = " ".join(str(exc).split("\n", 1)[0].split()) or type(exc).__name__
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {getattr(exc, 'problem', None) or text}"
    if isinstance(exc, (KeyError,)) and exc.args:
        return str(exc.args[0])
    return text


def detail_lines(exc: BaseException) -> list[str]:
    """The lines of ``exc``'s message after the first (a list of what was tried, a usage)."""
    if isinstance(exc, yaml.YAMLError) or (isinstance(exc, KeyError) and exc.args):
        return []
    return [line.rstrip() for line in str(exc).splitlines()[1:] if line.strip()]


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("SDPO_DEBUG", "") not in ("", "0")


def report(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as the one-line answer and return the exit status."""
    if debug:
        raise exc
    details = "".join(f"{line}\n" for line in detail_lines(exc))
    if isinstance(exc, USER_MISTAKES):
        sys.stderr.write(f"sdpo: error: {headline(exc)}\n{details}")
        return USAGE_STATUS
    sys.stderr.write(
        f"sdpo: error: {type(exc).__name__}: {headline(exc)} (a fault of sdpo-gym, not of the command: "
        f"rerun with --debug for the traceback and report it)\n{details}"
    )
    return FAILURE_STATUS
