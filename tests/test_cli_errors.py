"""Every mistake on the command line is answered in one line, ``sdpo: error: ...``, exit 2;
a traceback only with ``--debug`` or ``SDPO_DEBUG=1``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdpo_agent.cli import main


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sdpo: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["train", "--env", "sdpo/Maht-v0"],
            "unknown environment 'sdpo/Maht-v0'; did you mean sdpo/Math-v0?",
        ),
        (["eval", "--env", "sdpo/tooluse-v0"], "did you mean sdpo/ToolUse-v0?"),
        (
            ["train", "--env", "sdpo/Math-v0", "--env-arg", "dataset=/no/such/file.jsonl"],
            "task file '/no/such/file.jsonl' does not exist",
        ),
        (
            ["train", "--env", "sdpo/Math-v0", "--env-arg", "reveal_anser=true"],
            "sdpo/Math-v0 takes no argument 'reveal_anser'; did you mean reveal_answer?",
        ),
        (["train", "--env", "sdpo/Math-v0", "--steps", "-3"], "--steps must be >= 1, got -3"),
        (["train", "--env", "sdpo/Math-v0", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["train", "--env", "sdpo/Math-v0", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
        (
            ["train", "--env", "sdpo/Math-v0", "--set", "learning_rat=1e-5"],
            "SDPOConfig has no field 'learning_rat'; did you mean learning_rate?",
        ),
        (
            ["train", "--env", "sdpo/Math-v0", "--algorithm", "grpo", "--set", "distillation_topk=5"],
            "GRPOConfig has no field 'distillation_topk'",
        ),
        (["train", "--env", "sdpo/Math-v0", "--set", "temperature=-1"], "temperature must be > 0, got -1"),
        (["train", "--env", "sdpo/Math-v0", "--set", "oops"], "--set expects KEY=VALUE, got 'oops'"),
        (
            ["train", "--env", "sdpo/Math-v0", "--set", "beta=[1"],
            "--set 'beta=[1': the value is not valid YAML",
        ),
        (["train"], "the following arguments are required: --env"),
        (["trian", "--env", "x"], "unknown command 'trian'; did you mean train?"),
        (
            ["compare", "--env", "sdpo/Math-v0", "--algorithms", "sdpo,grpoo"],
            "unknown algorithm 'grpoo'; did you mean grpo?",
        ),
        (
            ["eval", "--env", "sdpo/Math-v0", "--samples", "2", "--k", "1,8"],
            "pass@8 needs at least 8 samples per task",
        ),
        (["judge", "--task", "HumanEval/9999", "--canonical"], "no task 'HumanEval/9999' in 'humaneval'"),
        (
            ["discover", "--env", "sdpo/Math-v0", "--task", "0", "--budget", "0"],
            "--budget must be >= 1, got 0",
        ),
    ],
)
def test_mistakes_get_one_line(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert expected in one_line_error(capsys, argv)


def test_config_file_mistakes(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1\n")
    assert "invalid YAML at line 2, column 1" in one_line_error(capsys, ["train", "--config", str(bad)])
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    assert "expected a mapping" in one_line_error(capsys, ["train", "--config", str(listed)])
    assert "no such file" in one_line_error(capsys, ["train", "--config", str(tmp_path / "missing.yaml")])


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match="did you mean sdpo/Math-v0"):
        main(["--debug", "train", "--env", "sdpo/Maht-v0"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        main(["train", "--env", "sdpo/Math-v0", "--steps", "0", "--debug"])
    monkeypatch.setenv("SDPO_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["train", "--env", "sdpo/Maht-v0"])


def test_a_fault_of_ours_is_one_line_too_with_exit_1(capsys, monkeypatch):
    import sdpo_agent.cli.envs as envs_command

    def broken(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(envs_command, "run", broken)
    assert main(["envs"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sdpo: error: RuntimeError: something inside broke")
    assert "--debug" in err[0]


def test_the_console_script_answers_in_one_line():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sdpo")), "train", "--env", "sdpo/Maht-v0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sdpo: error: unknown environment 'sdpo/Maht-v0'; did you mean sdpo/Math-v0? (registered: "
        "sdpo/CodeExec-v0, sdpo/MCQ-v0, sdpo/Math-v0, sdpo/ToolUse-v0; `sdpo envs` lists them)"
    ]
