"""The obvious command works on its own defaults (issue 29, item 1): the default held-out size
fits every built-in environment's default task set in ``train``, ``eval``, ``compare`` and
``discover``, and ``eval``'s default k follows ``--samples``."""

from __future__ import annotations

import json

import pytest
from cli_subprocess import sdpo

import sdpo_envs
from sdpo_agent.rollout.task_split import heldout_size

BUILT_IN = ("sdpo/CodeExec-v0", "sdpo/MCQ-v0", "sdpo/Math-v0", "sdpo/ToolUse-v0")
COMMANDS = (["train"], ["eval"], ["compare"], ["discover", "--task", "0"])


def test_the_built_in_envs_are_the_ones_checked():
    assert set(BUILT_IN) <= set(sdpo_envs.registered_envs())


@pytest.mark.parametrize("env", BUILT_IN)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_defaults_fit_every_built_in_env(env, command, tmp_path):
    done = sdpo(*command, "--env", env, "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["command"] == command[0]
    assert shown["train_tasks"] >= 1
    if command[0] != "discover":
        assert shown["heldout_tasks"] >= 1


def test_math_holds_out_a_quarter_of_its_32_tasks(tmp_path):
    done = sdpo(
        "train", "--env", "sdpo/Math-v0", "--model", "tiny", "--steps", "1", "--dry-run", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["train_tasks"], json.loads(done.stdout)["heldout_tasks"]) == (24, 8)


def test_an_explicit_held_out_size_that_leaves_nothing_to_train_is_refused(tmp_path):
    done = sdpo("train", "--env", "sdpo/Math-v0", "--eval-tasks", "32", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "sdpo: error: --eval-tasks: cannot hold out 32 of 32 tasks and still train: ask for fewer "
        "held-out tasks (at most 31)"
    )


def test_default_held_out_size_scales_to_the_data():
    class Tasks:
        is_finite = True

        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    class Env:
        def __init__(self, n):
            self.tasks = Tasks(n)

    assert [heldout_size(Env(n)) for n in (1, 2, 4, 32, 52, 164, 1000)] == [0, 1, 1, 8, 13, 32, 32]
    assert heldout_size(Env(32), 5) == 5


def test_eval_default_k_follows_samples(tmp_path):
    # The issue's command, with short completions so it finishes in seconds on the tiny model.
    done = sdpo(
        "eval", "--env", "sdpo/CodeExec-v0", "--tasks", "1", "--samples", "1",
        "--max-completion-length", "8", "--json", cwd=tmp_path, SDPO_GYM_CACHE=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n"] == 1 and report["tasks"] == 1
    assert "pass@1" in report and not any(key.startswith("pass@8") for key in report)


def test_eval_default_k_is_1_and_samples(tmp_path):
    done = sdpo("eval", "--env", "sdpo/Math-v0", "--samples", "3", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["k"] is None  # resolved to pass@1 and pass@3
    done = sdpo("eval", "--env", "sdpo/Math-v0", "--samples", "2", "--k", "1,8", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "sdpo: error: pass@8 needs at least 8 samples per task: raise --samples or lower --k"
    )


@pytest.mark.slow
def test_the_issues_train_command_runs(tmp_path):
    done = sdpo(
        "train", "--env", "sdpo/Math-v0", "--model", "tiny", "--steps", "1",
        cwd=tmp_path, SDPO_GYM_CACHE=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["final_heldout"]["heldout/tasks"] == 8
