"""Adapters to other trainers, vector envs, and third-party plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import sdpo_envs
from sdpo_envs import add_privileged_context, as_reward_func, make_vector_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import custom_env  # noqa: E402  (registers examples/Reverse-v0)


def test_reward_function_follows_trl_convention_and_exposes_feedback():
    reward = as_reward_func("examples/Reverse-v0")
    prompts = ["p1", "p2", "p3"]
    completions = ["muisanmyg", [{"role": "assistant", "content": "nope"}], "rehcaet"]
    rewards = reward(prompts, completions, word=["gymnasium", "teacher", "teacher"])
    assert rewards == [1.0, 0.0, 1.0]
    assert [fb.verdict for fb in reward.last_feedbacks] == ["pass", "wrong_answer", "pass"]
    assert "'teacher'" in reward.last_feedbacks[1].text


def test_reward_function_returns_none_for_judge_errors():
    class Flaky(custom_env.ReverseEnv):
        def judge(self, task, action):
            if action == "crash":
                raise RuntimeError("checker died")
            return super().judge(task, action)

    reward = as_reward_func(lambda: Flaky())
    assert reward(["a", "b"], ["crash", "drow"], word=["x", "word"]) == [None, 1.0]
    assert reward.last_feedbacks[0].is_judge_error


def test_privileged_context_column_for_trl_sdpo():
    rows = [{"word": "abc"}, {"word": "hello"}]
    out = add_privileged_context(rows, "examples/Reverse-v0", ["cba", "hello"])
    assert out[0]["privileged_context"] == ""  # a success has no feedback to give
    assert "'hello'" in out[1]["privileged_context"]
    assert out[1]["prompt"][-1]["role"] == "user" and "hello" in out[1]["prompt"][-1]["content"]
    generated = add_privileged_context(rows, "examples/Reverse-v0", lambda messages: "x")
    assert all(r["privileged_context"] for r in generated)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_gymnasium_vector_env(asynchronous):
    envs = make_vector_env("examples/Reverse-v0", 3, asynchronous=asynchronous)
    try:
        observations, _ = envs.reset(seed=0)
        assert len(observations) == 3 and all("Reverse the word" in o for o in observations)
        words = [o.split("'")[1] for o in observations]
        _, rewards, terminated, _, info = envs.step(tuple(w[::-1] for w in words))
        assert list(rewards) == [1.0, 1.0, 1.0] and all(terminated)
        assert list(info["verdict"]) == ["pass"] * 3
    finally:
        envs.close()


def test_custom_env_example_passes_check_env():
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make("examples/Reverse-v0").unwrapped, skip_render_check=True)


def test_third_party_plugin_registers_through_entry_point(tmp_path):
    """Install the example plugin package into a target dir and import sdpo_envs with it on the path."""
    target = tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*install, "--target", str(target), str(ROOT / "examples" / "plugin_package")],
        check=True,
        env=env,
        capture_output=True,
    )
    code = (
        "import gymnasium as gym, sdpo_envs\n"
        "env = gym.make('plugin/Reverse-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        'word = obs.split("\'")[1]\n'
        "print(sdpo_envs.loaded_plugins()['reverse'], env.step(word[::-1])[1])\n"
    )
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "1.0"]
    assert "plugin/Reverse-v0" not in sdpo_envs.registered_envs()  # not installed in this process
