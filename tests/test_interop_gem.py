"""GEM environments (``gem.Env``: a Gymnasium 5-tuple over text) trained here through
``GemEnv``: a game written GEM's way and GEM's own ``GuessTheNumber``."""

from __future__ import annotations

import copy
import json
import random

import gymnasium as gym
import pytest
import torch
from interop_training import ScriptedGenerator, environment_text, grpo_trainer, sdpo_trainer, use_generator

from sdpo_agent.cli import main

gem = pytest.importorskip("gem", reason="the interop extra (gem-llm==0.1.0) is not installed")
from gem.utils.constants import TERMINAL_STATE  # noqa: E402

from sdpo_envs.interop.gem_env import GemEnv  # noqa: E402


class ParityGame(gem.Env):
    """Write something of even length; an odd one is told its length and may try again."""

    def __init__(self, tries: int = 2, **_):
        super().__init__()
        self.tries = tries

    def reset(self, seed=None):
        super().reset(seed)
        self.n, self.turn = random.randint(1, 99), 0
        return f"Write something of even length (game {self.n}).", {"suffix": "Your answer:"}

    def step(self, action):
        self.turn += 1
        if len(action) % 2 == 0:
            return "Correct: the length is even.", 1.0, True, False, {"length": len(action)}
        if self.turn >= self.tries:
            return (
                f"Wrong: your answer has odd length {len(action)}.",
                0.0,
                True,
                False,
                {"length": len(action)},
            )
        return f"Odd length {len(action)}; try once more.", 0.0, False, False, {"suffix": "Your answer:"}


class GradedOnly(ParityGame):
    """A bandit in the style of GEM's MathEnv: the terminal observation is a placeholder."""

    def step(self, action):
        return TERMINAL_STATE, 0.0, True, True, {"correct": False, "length": len(action)}


if "test:Parity-v0" not in gem.envs.registration.ENV_REGISTRY:
    gem.register("test:Parity-v0", ParityGame)


def test_sdpo_trains_two_steps_with_the_games_last_observation_in_the_reprompt(tmp_path):
    trainer, teacher = sdpo_trainer("gem:test:Parity-v0", tmp_path, env_kwargs={"env_kwargs": {"tries": 1}})
    trainer.train()
    assert trainer.state.global_step == 2
    assert any("Wrong: your answer has odd length" in t and "length:" in t for t in teacher.texts)
    rewards = [e["rewards/env/mean"] for e in trainer.state.log_history if "rewards/env/mean" in e]
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)


def test_a_multi_turn_game_stays_multi_turn_token_exact(tmp_path):
    trainer, _ = sdpo_trainer(GemEnv("test:Parity-v0"), tmp_path, steps=1, max_completion_length=80)
    use_generator(
        trainer,
        ScriptedGenerator(trainer.processing_class, lambda text, turn: "odd" if turn == 0 else "even"),
    )
    rollouts = trainer.rollout([{"task_index": 7}] * 4, "train").rollouts
    for rollout in rollouts:
        assert rollout.turns == 2 and rollout.feedback.success and rollout.env_reward == 1.0
        assert "Odd length 3; try once more.\nYour answer:" in environment_text(
            trainer.processing_class, rollout
        )
        assert rollout.completion_mask[0] == 1 and rollout.completion_mask[-1] == 1
    trainer.train()


def test_a_task_is_a_seed_and_gems_own_game_runs_to_its_end():
    env = GemEnv("game:GuessTheNumber-v0-easy")
    first, info = env.reset(options={"index": 4})
    assert info["task_id"] == "game:GuessTheNumber-v0-easy/seed-4" and first.endswith(
        "Enter your next guess."
    )
    target = env.gem_env.game_number
    assert (
        env.reset(options={"index": 4})[0] == first and env.gem_env.game_number == target
    )  # same seed, same game
    wrong = target % 10 + 1
    observation, reward, terminated, _, info = env.step(f"\\boxed{{{wrong}}}")
    assert (
        not terminated
        and f"you guessed {wrong}" in observation
        and info["feedback_source"] == "gem:observation"
    )
    _, reward, terminated, _, info = env.step(f"\\boxed{{{target}}}")
    assert (reward, terminated, info["verdict"]) == (1.0, True, "pass")
    assert info["feedback"].text.startswith(f"Congratulations! You guessed the correct number {target}")
    env.reset(options={"index": 4})
    _, reward, terminated, _, info = env.step("no guess")
    assert (reward, terminated, info["verdict"]) == (-0.1, True, "wrong_answer")
    assert info["feedback"].text == "At turn 1, you did not provide a valid guess."


def test_a_placeholder_observation_falls_back_to_the_info_and_feedback_fn_overrides():
    env = GemEnv(GradedOnly())
    env.reset(options={"index": 0})
    _, _, _, truncated, info = env.step("abc")
    assert info["feedback_source"] == "gem:info" and info["feedback"].text == "correct: False\nlength: 3"
    assert info["verdict"] == "wrong_answer" and truncated is False  # the episode terminated
    custom = GemEnv(GradedOnly(), feedback_fn=lambda step: f"{step.info['length']} characters; aim for even.")
    custom.reset(options={"index": 0})
    info = custom.step("abc")[4]
    assert info["feedback_source"] == "feedback_fn" and info["feedback"].text == "3 characters; aim for even."


def test_gymnasium_make_and_copies_get_their_own_game():
    env = gym.make("interop/GEM-v0", env="test:Parity-v0").unwrapped
    assert isinstance(env, GemEnv)
    twin = copy.deepcopy(GemEnv(ParityGame()))
    other = copy.deepcopy(twin)
    assert twin.gem_env is not other.gem_env


class Broken(ParityGame):
    def __init__(self, answer, **kwargs):
        super().__init__(**kwargs)
        self.answer = answer

    def step(self, action):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (RuntimeError("game server down"), "step raised RuntimeError: game server down"),
        (
            ("obs", 1.0, True, {}),
            "GEM step returned a tuple of (str, float, bool, dict), expected (observation: str",
        ),
        (("obs", "high", True, False, {}), "GEM step returned reward 'high', not a number"),
        (("obs", float("inf"), True, False, {}), "reward inf, not a finite number"),
        ((["obs"], 1.0, True, False, {}), "an observation of type list"),
        (("obs", 1.0, True, False, "info"), "info of type str"),
    ],
)
def test_a_broken_game_is_a_judge_error_with_the_reason(answer, reason):
    env = GemEnv(Broken(answer))
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("x")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "judge_error")
    assert reason in info["feedback"].details["reason"] and info["feedback_source"] == "gem:error"


class FailsToReset(ParityGame):
    def reset(self, seed=None):
        raise OSError("no game data")


def test_reset_failure_and_grpo_leaves_judge_errors_out_of_the_loss(tmp_path):
    env = GemEnv(FailsToReset())
    observation, _ = env.reset(options={"index": 0})
    assert observation == "(the environment failed to start)"
    info = env.step("x")[4]
    assert info["verdict"] == "judge_error" and "OSError: no game data" in info["feedback"].details["reason"]
    trainer = grpo_trainer(lambda: GemEnv(Broken(RuntimeError("down"))), tmp_path)
    batch = trainer.build_batch([{"task_index": 0}] * 4, "train")
    assert batch.valid.sum() == 0 and torch.all(batch.advantages == 0)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown GEM environment 'game:NoSuchGame-v0'"):
        GemEnv("game:NoSuchGame-v0")
    with pytest.raises(TypeError, match=r"expected a gem\.Env"):
        GemEnv(lambda: object())
    with pytest.raises(ValueError, match="task field 'seed' must be a non-negative integer"):
        GemEnv("test:Parity-v0").reset(options={"task": {"seed": "one"}})


def test_sdpo_train_and_eval_commands_take_the_spec_string(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SDPO_GYM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    small = ["--model", "tiny", "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "8"]
    spec = ["--env", "gem:test:Parity-v0", "--env-arg", "env_kwargs={tries: 1}"]
    assert main(["train", *spec, *small, "--steps", "2", "--output-dir", str(out)]) == 0
    capsys.readouterr()
    argv = ["eval", *spec, "--model", str(out / "final"), "--tasks", "3", "--samples", "2", "--k", "1"]
    assert main([*argv, "--max-completion-length", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == 3 and 0.0 <= report["pass@1"] <= 1.0
