"""The environment framework: TextEnv contract, tasks, registry, batch stepping, retries."""

from __future__ import annotations

import json
import sys
import threading
import time

import datasets
import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sdpo_envs
from sdpo_envs import Feedback, FeedbackRetry, TextEnv, batch_step, bound_text, load_tasks


class EchoEnv(TextEnv):
    """Answer with the row's target word; feedback names the expected word."""

    def build_messages(self, task):
        return [{"role": "user", "content": f"Say {task['target']}"}]

    def judge(self, task, action):
        if action.strip() == task["target"]:
            return 1.0, Feedback.passed()
        return 0.0, Feedback(f"Expected {task['target']!r}, got {action.strip()!r}.", "wrong_answer")


ROWS = [{"target": w} for w in ("alpha", "beta", "gamma", "delta")]


def test_reset_step_contract_and_messages():
    env = EchoEnv(ROWS)
    obs, info = env.reset(seed=0, options={"index": 1})
    assert obs == "Say beta"
    assert info["messages"] == [{"role": "user", "content": "Say beta"}]
    assert info["task_id"].endswith("/1")
    obs, reward, terminated, truncated, info = env.step("beta")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["feedback"].verdict == "pass" and info["success"] is True
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


def test_wrong_answer_feedback_and_task_option():
    env = EchoEnv(ROWS, system_prompt="Be brief.")
    _, info = env.reset(options={"task": {"target": "zeta", "task_id": "custom"}})
    assert info["task_id"] == "custom"
    assert info["messages"][0] == {"role": "system", "content": "Be brief."}
    _, reward, *_, info = env.step("eta")
    assert reward == 0.0
    assert info["feedback"].verdict == "wrong_answer"
    assert "'zeta'" in info["feedback"].text and info["success"] is False


def test_draws_use_own_rng_not_global():
    import random

    import numpy as np

    drawn = []
    for _ in range(2):
        random.seed(123)
        np.random.seed(123)
        env = EchoEnv(ROWS)
        drawn.append([env.reset(seed=7)[0] for _ in range(5)])
        np.random.random(100)  # moving the global RNG must not matter
    assert drawn[0] == drawn[1]
    env_a, env_b = EchoEnv(ROWS), EchoEnv(ROWS)
    env_a.reset(seed=1)
    env_b.reset(seed=1)
    assert [env_a.reset()[0] for _ in range(6)] == [env_b.reset()[0] for _ in range(6)]


def test_check_env_passes_on_a_text_env():
    check_env(EchoEnv(ROWS), skip_render_check=True)


def test_env_exception_becomes_judge_error():
    class Broken(EchoEnv):
        def judge(self, task, action):
            raise ZeroDivisionError("boom")

    env = Broken(ROWS)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("x")
    assert info["feedback"].verdict == "judge_error" and reward == 0.0 and terminated
    assert "ZeroDivisionError" in info["feedback"].details["reason"]


def test_feedback_is_bounded():
    class Loud(EchoEnv):
        def judge(self, task, action):
            return 0.0, Feedback("HEAD" + "x" * 10_000 + "TAIL", "wrong_answer")

    env = Loud(ROWS, max_feedback_chars=300)
    env.reset(seed=0)
    text = env.step("x")[-1]["feedback"].text
    assert len(text) <= 300 and text.startswith("HEAD") and text.endswith("TAIL")
    assert bound_text("short", 100) == "short"


def test_feedback_validates_verdict():
    with pytest.raises(ValueError, match="unknown verdict"):
        Feedback("x", "almost")
    with pytest.raises(ValueError, match="success=True"):
        Feedback("x", "wrong_answer", success=True)


def test_tasks_from_dataset_list_jsonl_generator_and_callable(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    assert load_tasks(ds)[2] == {"target": "gamma"}
    assert len(load_tasks(ROWS)) == 4
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert load_tasks(str(path))[3] == {"target": "delta"}
    assert load_tasks(r for r in ROWS)[0] == {"target": "alpha"}
    procedural = load_tasks(lambda i: {"target": f"w{i}"})
    assert procedural[41] == {"target": "w41"} and not procedural.is_finite


def test_task_loading_errors_are_precise(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"target": "a"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_tasks(str(bad))
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_tasks("nope", {"humaneval": lambda: None})
    with pytest.raises(ValueError, match="empty"):
        load_tasks([])
    with pytest.raises(IndexError, match="out of range"):
        load_tasks(ROWS)[10]
    env = EchoEnv()
    with pytest.raises(ValueError, match="no task set"):
        env.reset()
    with pytest.raises(ValueError, match="unknown reset options"):
        EchoEnv(ROWS).reset(options={"idx": 1})


def test_register_and_make_with_kwargs():
    sdpo_envs.register("test/Echo-v0", entry_point=EchoEnv, dataset=ROWS)
    env = gym.make("test/Echo-v0", max_turns=1, system_prompt="S")
    _, info = env.reset(seed=3)
    assert info["messages"][0]["content"] == "S"
    assert "test/Echo-v0" in sdpo_envs.registered_envs()


def test_builtin_plugins_registered_through_entry_points():
    assert sdpo_envs.loaded_plugins().get("code_exec") == "ok"
    assert "sdpo/CodeExec-v0" in sdpo_envs.registered_envs()


def test_import_does_not_pull_torch():
    import subprocess

    code = "import sys, sdpo_envs, sdpo_envs.sandbox; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batch_step_runs_concurrently_and_contains_failures():
    barrier = threading.Barrier(4, timeout=5)

    class Slow(EchoEnv):
        def judge(self, task, action):
            barrier.wait()  # only returns if all four steps run at the same time
            if action == "raise":
                raise RuntimeError("env bug")
            return super().judge(task, action)

    envs = [Slow(ROWS) for _ in range(4)]
    for i, env in enumerate(envs):
        env.reset(options={"index": i})
    results = batch_step(envs, ["alpha", "wrong", "raise", "delta"], max_workers=4)
    assert [r.reward for r in results] == [1.0, 0.0, 0.0, 1.0]
    assert [r.info["verdict"] for r in results] == ["pass", "wrong_answer", "judge_error", "pass"]


def test_batch_step_times_out_a_hung_env():
    release = threading.Event()

    class Hung(EchoEnv):
        def judge(self, task, action):
            release.wait(10)
            return 1.0, Feedback.passed()

    envs = [Hung(ROWS), EchoEnv(ROWS)]
    for env in envs:
        env.reset(options={"index": 0})
    start = time.monotonic()
    results = batch_step(envs, ["alpha", "alpha"], timeout_s=0.2)
    release.set()
    assert (
        results[0].info["verdict"] == "judge_error"
        and "exceeded" in results[0].info["feedback"].details["reason"]
    )
    assert results[1].info["verdict"] == "pass"
    assert time.monotonic() - start < 9  # did not wait for the hung step


def test_feedback_retry_wrapper_turns_feedback_into_next_observation():
    env = FeedbackRetry(EchoEnv(ROWS), max_attempts=3)
    env.reset(options={"index": 0})
    obs, reward, terminated, truncated, info = env.step("wrong")
    assert not terminated and not truncated and reward == 0.0
    assert "Expected 'alpha'" in obs
    assert [m["role"] for m in info["messages"]] == ["user", "assistant", "user"]
    obs, reward, terminated, truncated, info = env.step("alpha")
    assert terminated and reward == 1.0 and info["attempt"] == 2
    env.reset(options={"index": 1})
    for _ in range(2):
        assert not any(env.step("no")[2:4])
    _, _, terminated, truncated, info = env.step("no")
    assert truncated and not terminated and info["attempt"] == 3
