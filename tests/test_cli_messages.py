"""Mistakes are answered whole and in the user's words (issue 29, items 2 and 3): a one-line
headline with the detail lines under it, bad values refused with the argument and the
expected type, the flags named rather than internal fields, unknown flags with a suggestion
and the command's usage; exit status 2."""

from __future__ import annotations

import pytest
from cli_subprocess import error_lines, sdpo

from sdpo_agent.cli import COMMANDS

MATH = ["--env", "sdpo/Math-v0"]


def answer(*args: str, cwd=None) -> list[str]:
    done = sdpo(*args, cwd=cwd)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = error_lines(done)
    assert lines and lines[0].startswith("sdpo: error: ") and "Traceback" not in done.stderr
    return lines


def test_a_multi_line_message_keeps_its_detail(tmp_path):
    lines = answer("eval", *MATH, "--tasks", "1", "--model", "nonexistent-model-xyz", cwd=tmp_path)
    assert lines[0].startswith(
        "sdpo: error: Cannot load model 'nonexistent-model-xyz': no such local directory"
    )
    assert lines[0].endswith("Tried, in order:")
    detail = "\n".join(lines[1:])
    for tried in ("1. a local directory", "2. the local Hugging Face cache", "3. the built-in aliases"):
        assert tried in detail
    assert "tiny: randomly initialised" in detail and "smollm2-135m: SmolLM2-135M-Instruct" in detail


@pytest.mark.parametrize(
    ("argv", "headline"),
    [
        (
            ["train", *MATH, "--env-arg", "reveal_answer=maybe"],
            "sdpo/Math-v0 argument reveal_answer expects a boolean (true or false), got 'maybe' (str)",
        ),
        (
            ["eval", "--env", "sdpo/CodeExec-v0", "--env-arg", "memory_mb=lots"],
            "sdpo/CodeExec-v0 argument memory_mb expects an integer or none, got 'lots' (str)",
        ),
        (
            ["train", *MATH, "--env-arg", "answer_format=latex"],
            "sdpo/Math-v0 argument answer_format expects one of 'boxed', 'tag', got 'latex' (str)",
        ),
        (
            ["train", *MATH, "--batch-size", "6", "--num-generations", "4"],
            "--batch-size (6) must be a multiple of --num-generations (4): each prompt of a step gets 4 completions",
        ),
        (["train", *MATH, "--eval-samples", "0"], "--eval-samples must be >= 1, got 0"),
        (["compare", *MATH, "--warm-start", "--sft-tasks", "0"], "--sft-tasks must be >= 1, got 0"),
        (["discover", *MATH, "--task", "0", "--group-size", "0"], "--group-size must be >= 1, got 0"),
        (["compare", *MATH, "--seeds", "0,x"], "--seeds expects comma-separated integers, got '0,x'"),
    ],
)
def test_bad_values_are_refused_in_the_users_words(argv, headline, tmp_path):
    assert answer(*argv, cwd=tmp_path) == [f"sdpo: error: {headline}"]


def test_config_fields_are_type_checked(tmp_path):
    # After the trainer config loads (its fields are transformers'), still before the model.
    lines = answer("train", *MATH, "--set", "beta=abc", cwd=tmp_path)
    assert lines == ["sdpo: error: SDPOConfig field beta expects a number, got 'abc' (str)"]
    config = tmp_path / "job.yaml"
    config.write_text("env: sdpo/Math-v0\nsteps: many\n")
    assert answer("train", "--config", str(config), cwd=tmp_path) == [
        "sdpo: error: --steps expects an integer, got 'many' (str)"
    ]


def test_an_unknown_flag_gets_the_nearest_one_and_the_usage(tmp_path):
    lines = answer("train", *MATH, "--stpes", "1", cwd=tmp_path)
    assert (
        lines[0]
        == "sdpo: error: unrecognized argument --stpes; did you mean --steps? (see `sdpo train --help`)"
    )
    assert lines[1].startswith("usage: sdpo train ") and "[--steps STEPS]" in " ".join(lines[1:])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_an_unknown_flag_with_its_usage(command, tmp_path):
    lines = answer(command, "--no-such-flag", cwd=tmp_path)
    assert lines[0] == f"sdpo: error: unrecognized argument --no-such-flag (see `sdpo {command} --help`)"
    assert lines[1].startswith(f"usage: sdpo {command} ")


def test_an_unknown_command_still_gets_its_suggestion(tmp_path):
    assert answer("trian", *MATH, cwd=tmp_path) == [
        "sdpo: error: unknown command 'trian'; did you mean train? (see `sdpo --help`)"
    ]
