"""SkyRL-gym environments (``init(prompt)``, ``step(action) -> {observations, reward, done,
metadata}``, one env per dataset row) trained here through ``SkyRLEnv``: an env written
SkyRL's way and SkyRL's own ``gsm8k`` / ``gsm8k_multi_turn``."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from interop_training import ScriptedGenerator, environment_text, grpo_trainer, sdpo_trainer, use_generator

skyrl_gym = pytest.importorskip("skyrl_gym", reason="the interop extra (skyrl-gym==0.4.0) is not installed")
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput  # noqa: E402

from sdpo_envs.interop.skyrl_env import SkyRLEnv  # noqa: E402


class ParityEnv(BaseTextEnv):
    """Even-length answers pass; an odd one is told so and may retry ``extra_info.tries`` times."""

    def __init__(self, env_config=None, extras=None):
        super().__init__()
        self.tries = int(extras["extra_info"]["tries"])

    def step(self, action):
        self.turns += 1
        if len(action) % 2 == 0:
            return BaseTextEnvStepOutput(
                observations=[], reward=1.0, done=True, metadata={"length": len(action)}
            )
        if self.turns >= self.tries:
            return BaseTextEnvStepOutput(
                observations=[], reward=0.0, done=True, metadata={"reason": f"odd length {len(action)}"}
            )
        retry = [{"role": "user", "content": f"Odd length {len(action)}; try again."}]
        return BaseTextEnvStepOutput(observations=retry, reward=0.0, done=False, metadata={})


if "test_parity" not in skyrl_gym.registry:
    skyrl_gym.register(id="test_parity", entry_point=ParityEnv)


def parity_rows(tries: int, n: int = 8) -> list[dict]:
    """SkyRL dataset rows: prompt, env_class, reward_spec, extra_info."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Write something of even length ({i})."}],
            "env_class": "test_parity",
            "reward_spec": {"method": "rule", "ground_truth": "even"},
            "extra_info": {"tries": tries},
        }
        for i in range(n)
    ]


GSM8K = [
    {
        "prompt": [{"role": "user", "content": "What is 3 + 4? End with '#### N'."}],
        "env_class": "gsm8k_multi_turn",
        "reward_spec": {"method": "rule", "ground_truth": "7"},
        "extra_info": {},
    }
]


def test_sdpo_trains_two_steps_with_the_envs_metadata_in_the_reprompt(tmp_path):
    trainer, teacher = sdpo_trainer(
        "skyrl:test_parity", tmp_path, env_kwargs={"dataset": parity_rows(tries=1)}
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert any("reason: odd length" in t for t in teacher.texts)
    rewards = [e["rewards/env/mean"] for e in trainer.state.log_history if "rewards/env/mean" in e]
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)


def test_skyrls_multi_turn_env_stays_multi_turn_token_exact(tmp_path):
    trainer, _ = sdpo_trainer(SkyRLEnv(dataset=GSM8K * 4), tmp_path, steps=1, max_completion_length=120)
    use_generator(
        trainer, ScriptedGenerator(trainer.processing_class, lambda text, turn: f"#### {5 + 2 * turn}")
    )
    rollouts = trainer.rollout([{"task_index": 0}] * 4, "train").rollouts
    for rollout in rollouts:
        assert rollout.turns == 2 and rollout.feedback.success and rollout.env_reward == 1.0
        assert "Please provide your step-by-step reasoning" in environment_text(
            trainer.processing_class, rollout
        )
        assert rollout.completion_mask[0] == 1 and rollout.completion_mask[-1] == 1
    assert rollouts[0].feedback.text == "steps: 2"  # get_metrics(); the final step has no observation
    trainer.train()


def test_observations_of_the_final_step_are_the_feedback_and_feedback_fn_overrides():
    env = SkyRLEnv("test_parity", dataset=parity_rows(tries=2))
    observation, info = env.reset(options={"index": 1})
    assert observation == "Write something of even length (1)." and info["task_id"] == "tasks/1"
    observation, _, terminated, _, info = env.step("abc")
    assert (observation, terminated, info["feedback_source"]) == (
        "Odd length 3; try again.",
        False,
        "skyrl:observations",
    )
    _, reward, terminated, _, info = env.step("abcde")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "wrong_answer")
    assert info["feedback_source"] == "skyrl:metadata" and info["feedback"].text == "reason: odd length 5"
    custom = SkyRLEnv(
        dataset=parity_rows(tries=1), feedback_fn=lambda step: f"reward {step.reward}, {step.info}"
    )
    custom.reset(options={"index": 0})
    info = custom.step("abc")[4]
    assert (
        info["feedback_source"] == "feedback_fn"
        and info["feedback"].text == "reward 0.0, {'reason': 'odd length 3'}"
    )


def test_gymnasium_make_builds_skyrls_own_single_turn_env():
    rows = [{**GSM8K[0], "env_class": "gsm8k"}]
    env = gym.make("interop/SkyRL-v0", env="gsm8k", dataset=rows).unwrapped
    env.reset(options={"index": 0})
    assert env.step("so #### 7")[1] == 1.0


class Broken(ParityEnv):
    def step(self, action):
        answer = self.answers[0] if hasattr(self, "answers") else None
        if isinstance(answer, Exception):
            raise answer
        return answer


def broken_env(answer):
    class Answering(Broken):
        answers = [answer]

    return Answering


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (RuntimeError("sql server down"), "step raised RuntimeError: sql server down"),
        (("obs", 1.0, True), "SkyRL step returned tuple"),
        ({"observations": [], "reward": 1.0}, "expected a mapping with observations, reward, done"),
        ({"observations": [], "reward": "1", "done": True}, "reward '1', not a finite number"),
        ({"observations": [], "reward": 1.0, "done": "yes"}, "done='yes', expected a bool"),
        (
            {"observations": [{"role": "user"}], "reward": 0.0, "done": False},
            "expected a list of {'role', 'content'}",
        ),
        ({"observations": [], "reward": 1.0, "done": True, "metadata": [1]}, "metadata of type list"),
    ],
)
def test_a_broken_env_is_a_judge_error_with_the_reason(answer, reason):
    env = SkyRLEnv(broken_env(answer), dataset=parity_rows(tries=1))
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("x")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "judge_error")
    assert reason in info["feedback"].details["reason"] and info["feedback_source"] == "skyrl:error"


def test_a_row_the_env_cannot_be_built_from_is_a_judge_error_and_left_out_of_the_loss(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "3 + 4?"}], "env_class": "gsm8k", "extra_info": {}}]
    env = SkyRLEnv(dataset=rows)  # no reward_spec: SkyRL's gsm8k env refuses to build
    observation, _ = env.reset(options={"index": 0})
    assert observation == "3 + 4?"
    info = env.step("#### 7")[4]
    assert (
        info["verdict"] == "judge_error"
        and "reward_spec field is required" in info["feedback"].details["reason"]
    )
    trainer = grpo_trainer(lambda: SkyRLEnv(dataset=rows * 4), tmp_path)
    batch = trainer.build_batch([{"task_index": 0}] * 4, "train")
    assert batch.valid.sum() == 0 and torch.all(batch.advantages == 0)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="SkyRLEnv needs dataset="):
        SkyRLEnv("gsm8k")
    with pytest.raises(ValueError, match="unknown SkyRL-gym environment 'gsm9k'"):
        SkyRLEnv("gsm9k", dataset=GSM8K)
    env = SkyRLEnv(dataset=GSM8K)
    with pytest.raises(ValueError, match="task has no 'env_class' and SkyRLEnv was given no env"):
        env.reset(options={"task": {"prompt": "hi"}})
    with pytest.raises(ValueError, match="task field 'prompt' must be a non-empty list"):
        env.reset(options={"task": {"env_class": "gsm8k"}})
