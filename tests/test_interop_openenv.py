"""OpenEnv environments trained here: in process and over the network (a real OpenEnv server,
its own process, reached through OpenEnv's own client), with their observations as feedback."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import requests
import torch

import sdpo_envs
from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.cli import main
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_envs import make_env_factory
from sdpo_envs.interop.openenv import OpenEnvEnv

SCRIPTS = Path(__file__).resolve().parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import openenv_server  # noqa: E402  (the test environments, also served by that script)

pytestmark = pytest.mark.xdist_group("openenv_server")  # one server process per test run

FAST = {
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 8,
    "logging_steps": 1,
    "report_to": "none",
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "disable_tqdm": True,
}


@contextlib.contextmanager
def serve(env: str = "target", max_sessions: int = 32):
    """An OpenEnv server for ``openenv_server.ENVS[env]`` in its own process, on a free port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    process = subprocess.Popen(
        [
            *(sys.executable, str(SCRIPTS / "openenv_server.py"), "--fd", str(listener.fileno())),
            *("--env", env, "--max-sessions", str(max_sessions)),
        ],
        pass_fds=[listener.fileno()],
        stderr=subprocess.PIPE,
    )
    listener.close()  # the server holds its own copy
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the OpenEnv server exited: {process.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the OpenEnv server did not start within 120 s")
            time.sleep(0.2)
        yield url, process
    finally:
        os.kill(process.pid, signal.SIGCONT)  # in case a test left it paused
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server():
    with serve("target") as running:
        yield running


def teacher_texts(trainer_cls, config, env, callbacks_out):
    class Capture:
        def on_teacher_context_built(self, teacher_input_ids, **kwargs):
            callbacks_out.append(teacher_input_ids)

        def __getattr__(self, name):
            return lambda *a, **k: None

    model, tokenizer = build_tiny_model()
    trainer = trainer_cls(
        model=model, args=config, env=env, processing_class=tokenizer, callbacks=[Capture()]
    )
    trainer.train()
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for batch in callbacks_out for ids in batch]
    return trainer, texts


# -- in process ----------------------------------------------------------------------------------
def test_in_process_env_prompts_with_its_observation_and_feeds_back_its_fields():
    env = OpenEnvEnv(openenv_server.TargetEnv)
    observation, info = env.reset(options={"task": {"seed": 1}})
    assert observation == "Write a program that prints the word cherry."
    _, reward, terminated, _, info = env.step("<think>hm</think>banana")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "wrong_answer")
    feedback = info["feedback"]
    assert "stderr: AssertionError: expected output 'cherry'" in feedback.text
    assert "exit_code: 1" in feedback.text and "stdout: banana" in feedback.text  # <think> removed
    assert info["feedback_source"] == "openenv:observation.stdout,stderr,exit_code"
    env.reset(options={"task": {"seed": 1}})
    _, reward, _, _, info = env.step("cherry")
    assert reward == 1.0 and info["feedback"].success


def test_feedback_fn_overrides_the_rule_and_info_says_so():
    env = OpenEnvEnv(
        openenv_server.TargetEnv, feedback_fn=lambda step: f"exit code {step.observation.exit_code}"
    )
    env.reset(options={"task": {"seed": 0}})
    _, _, _, _, info = env.step("nope")
    assert info["feedback"].text == "exit code 1" and info["feedback_source"] == "feedback_fn"


def test_multi_turn_env_stays_multi_turn_until_it_says_done():
    env = OpenEnvEnv(openenv_server.CounterEnv)
    env.reset(options={"index": 0})
    for turn in (1, 2):
        observation, reward, terminated, truncated, info = env.step(f"msg{turn}")
        assert (terminated, truncated, reward) == (False, False, 0.0)
        assert observation == f"turn {turn}: msg{turn}"  # the one non-empty text field, as it is
        assert info["messages"][-1] == {"role": "user", "content": observation}
    _, reward, terminated, _, info = env.step("msg3")
    assert terminated and reward == 3.0 and info["verdict"] == "pass"


def test_gymnasium_make_and_copies_are_fresh_peers():
    sdpo_envs.register(
        "test/OpenEnvTarget-v0",
        entry_point="sdpo_envs.interop.openenv:OpenEnvEnv",
        env="openenv_server:TargetEnv",
    )
    env = gym.make("test/OpenEnvTarget-v0").unwrapped
    assert isinstance(env, OpenEnvEnv)
    factory = make_env_factory(OpenEnvEnv(openenv_server.TargetEnv))
    first, second = factory(), factory()
    assert first.session.env is not second.session.env


@pytest.mark.parametrize(
    ("env_cls", "reason"),
    [
        (openenv_server.RaisingEnv, "step raised RuntimeError: the grader's sandbox is gone"),
        (openenv_server.RaisingResetEnv, "reset raised OSError: cannot load the task file"),
        (openenv_server.MalformedEnv, "MalformedEnv.step() returned dict, expected an openenv Observation"),
        (openenv_server.NaNRewardEnv, "'reward' is nan, expected a finite number"),
    ],
)
def test_a_broken_peer_is_a_judge_error_never_an_exception(env_cls, reason):
    env = OpenEnvEnv(env_cls)
    env.reset(options={"index": 0})  # a reset failure does not raise either
    _, reward, terminated, _, info = env.step("banana")
    assert info["verdict"] == "judge_error" and reward == 0.0 and terminated
    assert reason in info["feedback"].details["reason"]
    assert info["feedback_source"] == "openenv:error"


def test_judge_errors_are_left_out_of_the_loss(tmp_path):
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=1, include_environment_feedback=True, **FAST)
    trainer = SDPOTrainer(
        model=model, args=args, env=OpenEnvEnv(openenv_server.RaisingEnv), processing_class=tokenizer
    )
    batch = trainer.build_batch([{"task_index": 0}] * 4, "train")
    assert batch.valid.tolist() == [0.0] * 4
    assert torch.all(batch.advantages == 0)
    assert (
        batch.teacher.self_distillation_mask.tolist() == [0.0] * 4
    )  # no judge-error text reaches the teacher


def test_an_action_field_that_cannot_be_told_is_a_clear_error():
    with pytest.raises(ValueError, match="the action has no field 'code'; its fields: program"):
        OpenEnvEnv(openenv_server.TargetEnv, action_field="code")


# -- over the network ----------------------------------------------------------------------------
def test_a_running_server_is_reached_over_the_network(server):
    url, _ = server
    env = OpenEnvEnv(url)
    observation, _ = env.reset(options={"task": {"seed": 2}})
    assert observation == "Write a program that prints the word damson."
    _, reward, terminated, _, info = env.step("banana")
    assert (reward, terminated) == (0.0, True)
    assert "stderr: AssertionError: expected output 'damson'" in info["feedback"].text
    assert info["feedback_source"] == "openenv:observation.stdout,stderr,exit_code"
    env.reset(options={"task": {"seed": 2}})
    assert env.step("damson")[1] == 1.0
    env.close()


def test_sdpo_trains_two_steps_on_a_server_with_its_feedback_in_the_reprompt(server, tmp_path):
    url, _ = server
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=2, include_environment_feedback=True, **FAST)
    captured: list = []
    trainer, texts = teacher_texts(SDPOTrainer, args, f"openenv:{url}", captured)
    assert trainer.state.global_step == 2
    assert any("stderr: AssertionError: expected output" in t for t in texts)
    rates = [e["judge_error_rate"] for e in trainer.state.log_history if "judge_error_rate" in e]
    assert rates and max(rates) == 0.0


def test_grpo_trains_on_an_in_process_spec_string(tmp_path):
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, **FAST)
    trainer = GRPOTrainer(
        model=model, args=args, env="openenv:openenv_server:TargetEnv", processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert any("rewards/env/mean" in entry for entry in trainer.state.log_history)


def test_a_server_that_stops_answering_is_a_judge_error_naming_address_and_timeout(server):
    url, process = server
    env = OpenEnvEnv(url, connect_timeout_s=0.5, message_timeout_s=0.5)
    env.reset(options={"index": 0})
    os.kill(process.pid, signal.SIGSTOP)
    try:
        _, reward, terminated, _, info = env.step("banana")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    reason = info["feedback"].details["reason"]
    assert info["verdict"] == "judge_error" and reward == 0.0 and terminated
    assert url in reason and "message timeout 0.5 s" in reason and "step" in reason


def test_a_server_that_never_answers_fails_at_construction_with_address_and_timeout():
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections wait in the backlog; nothing ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        with pytest.raises(ConnectionError, match=rf"{url} did not answer GET /schema within 0.3 s"):
            OpenEnvEnv(url, connect_timeout_s=0.3)
        main_args = [
            "eval",
            "--env",
            f"openenv:{url}",
            "--env-arg",
            "connect_timeout_s=0.3",
            "--model",
            "tiny",
        ]
        assert main(main_args) == 2  # the command line's one-line answer to a user's mistake
    finally:
        silent.close()


def test_cli_trains_on_a_server_spec_string(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("SDPO_GYM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    argv = ["train", "--env", f"openenv:{url}", "--env-arg", "max_turns=1", "--model", "tiny"]
    argv += ["--steps", "2", "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "8"]
    argv += ["--eval-every", "2", "--eval-tasks", "2", "--eval-samples", "1", "--output-dir", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spec"]["env"] == f"openenv:{url}"
    assert summary["heldout"]  # held-out evaluation ran on the server's episodes too


def test_an_environment_dropped_without_close_gives_its_server_session_back():
    """Jobs drop their environments without closing them; on a one-session server the next
    episode would be refused for good if the dropped one kept its connection."""
    with serve("target", max_sessions=1) as (url, _):
        first = OpenEnvEnv(url)
        first.reset(options={"index": 0})
        assert first.step("apple")[4]["verdict"] == "wrong_answer"
        del first
        gc.collect()
        verdict, deadline = "judge_error", time.monotonic() + 30
        while verdict == "judge_error" and time.monotonic() < deadline:  # the close runs in the background
            second = OpenEnvEnv(url)
            second.reset(options={"index": 0})
            verdict = second.step("apple")[4]["verdict"]
            second.close()
        assert verdict == "wrong_answer"
