"""``sdpo serve``: an sdpo environment behind OpenEnv's server, reached by OpenEnv's own clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("openenv")
from cli_subprocess import sdpo_serve
from openenv import GenericEnvClient

from sdpo_envs.interop.openenv_server import SDPOEnvClient

SDPO = str(Path(sys.executable).with_name("sdpo"))
TASK = 5


@pytest.fixture(scope="module")
def server():
    """``sdpo serve`` in a process of its own, on a port the OS picked."""
    with sdpo_serve("--env", "sdpo/ToolUse-v0", "--max-sessions", "4") as address:
        yield address


@pytest.fixture(scope="module")
def oracle():
    env = gym.make("sdpo/ToolUse-v0").unwrapped
    env.reset(options={"index": TASK})
    return env.task, env.oracle_actions(env.task)


def test_generic_client_solves_a_task_with_reward_verdict_and_feedback(server, oracle):
    task, actions = oracle
    with GenericEnvClient(base_url=server).sync() as client:
        first = client.reset(task_index=TASK)
        assert task["question"] in first.observation["text"] and not first.done
        assert {t["function"]["name"] for t in first.observation["tools"]} == set(task["tools"])
        for action in actions[:-1]:
            result = client.step({"message": action})
            assert not result.done and result.reward == 0.0
            assert result.observation["verdict"] == "pass" and not result.observation["success"]
            assert result.observation["text"]  # the tool's result
        result = client.step({"message": actions[-1]})
        assert result.done and result.reward == 1.0
        assert result.observation["verdict"] == "pass" and result.observation["success"]
        assert result.observation["feedback"].startswith("Correct")
        assert result.metadata["terminated"] is True and "answer" in result.metadata["details"]


def test_typed_client_gets_a_wrong_answers_feedback(server, oracle):
    _, actions = oracle
    with SDPOEnvClient(base_url=server).sync() as client:
        client.reset(task_index=TASK)
        for action in actions[:-1]:
            client.step(action)
        result = client.step("<answer>-1</answer>")
        observation = result.observation
        assert result.done and result.reward == 0.0 and observation.verdict == "wrong_answer"
        assert "does not match the expected answer" in observation.feedback
        assert observation.messages[-1] == {"role": "assistant", "content": "<answer>-1</answer>"}


def test_malformed_actions_get_a_verdict_and_leave_the_episode_open(server, oracle):
    _, actions = oracle
    with GenericEnvClient(base_url=server).sync() as client:
        client.reset(task_index=TASK)
        for bad, reason in (({"text": "hi"}, "in 'message'"), ({"message": 5}, "must be a string")):
            result = client.step(bad)
            assert result.observation["verdict"] == "format_error" and result.reward == 0.0
            assert reason in result.observation["feedback"] and not result.done
        assert client.step({"message": actions[0]}).observation["turn"] == 1  # nothing was counted
        broken = client.step({"message": "neither a call nor an answer"})
        assert broken.done and broken.observation["verdict"] == "format_error"
        after = client.step({"message": "<answer>1</answer>"})
        assert "no episode is running" in after.observation["error"]


def test_bad_reset_options_are_answered_not_raised(server):
    with GenericEnvClient(base_url=server).sync() as client:
        assert "unknown reset option(s) ['bogus']" in client.reset(bogus=1).observation["error"]
        assert "out of range" in client.reset(task_index=10**9).observation["error"]
        assert "'question'" in client.reset(task={"answer": 1}).observation["error"]


def test_plain_http_step_with_a_malformed_action_is_not_a_server_error(server):
    request = urllib.request.Request(
        f"{server}/step",
        data=json.dumps({"action": {"nope": 1}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["observation"]["verdict"] == "format_error" and body["reward"] == 0.0
    with urllib.request.urlopen(f"{server}/health", timeout=60) as response:
        assert json.loads(response.read())["status"] == "healthy"


def test_unknown_env_id_is_a_one_line_usage_error():
    done = subprocess.run(
        [SDPO, "serve", "--env", "sdpo/Nope-v0", "--port", "0"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdpo: error: unknown environment 'sdpo/Nope-v0'")


def test_a_port_in_use_is_a_one_line_usage_error(capsys):
    from sdpo_agent.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--env", "sdpo/MCQ-v0", "--port", str(port)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"sdpo: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
