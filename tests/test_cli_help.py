"""Every ``--help`` shows each option's default, with its unit (issue 29, item 4). The help
formatter does it for every option of every command, so flags added later are covered too."""

from __future__ import annotations

import re

import pytest
from cli_subprocess import sdpo

from sdpo_agent.cli import COMMANDS, build_parser


def option_entries(help_text: str) -> dict[str, str]:
    """``--flag`` -> its entry in the options section (the wrapped lines joined)."""
    section = help_text.split("options:", 1)[1]
    entries: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
    return {flag: " ".join(text.split()) for flag, text in entries.items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_shows_its_default(command):
    done = sdpo(command, "--help")
    assert done.returncode == 0, done.stderr
    entries = option_entries(done.stdout)
    sub = build_parser([command])._subparsers._group_actions[0].choices[command]
    flags = {action.option_strings[-1] if action.option_strings[0] == "-h" else action.option_strings[0]
             for action in sub._actions if action.option_strings}  # fmt: skip
    assert flags - {"--help"} <= set(entries) | {"--help"}
    missing = {
        flag: text
        for flag, text in entries.items()
        if flag != "-h" and not re.search(r"\(default: |\(required\)", text)
    }
    assert not missing, missing


def test_defaults_carry_their_unit_and_their_reading():
    entries = option_entries(sdpo("train", "--help").stdout)
    assert "(default: 128 tokens)" in entries["--max-completion-length"]
    assert "(default: 8 completions)" in entries["--batch-size"]
    assert "(default: 5 steps)" in entries["--eval-every"]
    assert "(default: 32, at most a quarter of a finite task set)" in entries["--eval-tasks"]
    assert "(default: off)" in entries["--use-vllm"] and "(default: off)" in entries["--debug"]
    assert "(default: 1e-05)" in entries["--learning-rate"]
    eval_entries = option_entries(sdpo("eval", "--help").stdout)
    assert "(required)" in eval_entries["--env"]
    assert "(default: 1,SAMPLES)" in eval_entries["--k"]
    judge = option_entries(sdpo("judge", "--help").stdout)
    assert "(default: the task's own limit)" in judge["--time-limit"]


def test_a_flag_added_later_shows_its_default_too():
    parser = build_parser(["envs"])
    sub = parser._subparsers._group_actions[0].choices["envs"]
    sub.add_argument("--port", type=int, default=8000, help="where to listen")
    assert "where to listen (default: 8000)" in " ".join(sub.format_help().split())
