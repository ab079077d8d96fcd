"""TRL ``environment_factory`` classes trained here: tools from their methods, multi-turn tool
calls parsed as in ToolUse-v0, reward from ``get_reward`` and TRL reward functions."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

import sdpo_envs
from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.cli import main
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.rollout.agent_loop import observation_tokens
from sdpo_envs import make_env_factory
from sdpo_envs.interop.trl_env import TRLEnv
from sdpo_envs.tool_calls import format_tool_call

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
ROWS = [
    {"prompt": [{"role": "user", "content": "Find the secret number."}], "secret": n} for n in (3, 7, 11, 20)
]


class GuessEnv:
    """A TRL environment, written for ``GRPOTrainer(environment_factory=GuessEnv)``."""

    def reset(self, **row) -> str | None:
        self.secret = row["secret"]
        self.guesses: list[int] = []
        return " Guess it with the guess tool."

    def guess(self, number: int) -> str:
        """Guess the secret number.

        Args:
            number: Your guess, a non-negative integer.
        """
        if number < 0:
            raise ValueError("the secret is never negative")
        self.guesses.append(number)
        if number == self.secret:
            return "correct"
        return "higher" if number < self.secret else "lower"

    def _helper(self) -> None:
        """Private: not a tool."""

    def get_reward(self) -> float:
        return 1.0 if self.secret in self.guesses else 0.0


def few_guesses(completions, environments, **kwargs):
    """A TRL reward function: a bonus for solving in at most two guesses."""
    return [0.5 if env.secret in env.guesses and len(env.guesses) <= 2 else 0.0 for env in environments]


def call(name: str, **arguments) -> str:
    return format_tool_call(name, arguments)


def test_tools_are_the_public_methods_and_the_reset_text_joins_the_prompt():
    env = TRLEnv(GuessEnv, dataset=ROWS)
    observation, info = env.reset(options={"index": 1})
    assert observation == "Find the secret number. Guess it with the guess tool."
    assert [t["function"]["name"] for t in info["tools"]] == ["guess"]
    assert info["tools"][0]["function"]["parameters"]["properties"]["number"]["type"] == "integer"
    assert env.tools_in_prompt is False  # the chat template renders them, as in TRL


def test_multi_turn_tool_calls_and_the_feedback_rule():
    env = TRLEnv(GuessEnv, dataset=ROWS, reward_funcs=[few_guesses])
    env.reset(options={"index": 1})  # secret 7
    observation, reward, terminated, _, info = env.step(call("guess", number=-1) + call("guess", number=3))
    assert not terminated and reward == 0.0
    assert observation == (
        "[1] guess: Error: tool 'guess' raised ValueError: the secret is never negative\n\n[2] guess: higher"
    )
    assert info["messages"][-1] == {"role": "tool", "content": observation}
    assert info["verdict"] == "tool_error" and info["feedback_source"] == "trl:tool_results"
    assert "call 1 (guess): tool 'guess' raised ValueError" in info["feedback"].text
    _, _, terminated, _, info = env.step("<think>7?</think>" + call("guess", number=7))
    assert not terminated and info["feedback"].text == "Tool results:\ncorrect"
    _, reward, terminated, _, info = env.step("The secret is 7.")
    assert terminated and reward == 1.5  # get_reward 1 + few_guesses 0.5 (two valid guesses)
    feedback = info["feedback"]
    assert feedback.success and info["feedback_source"] == "trl:episode"
    assert "scored 1.5 (GuessEnv.get_reward, few_guesses)" in feedback.text
    assert "- guess: tool 'guess' raised ValueError: the secret is never negative" in feedback.text
    assert feedback.text.endswith("The last tool result was:\ncorrect")


def test_no_tool_call_ends_the_episode_and_max_turns_scores_it():
    env = TRLEnv(GuessEnv, dataset=ROWS, max_turns=2)
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("I give up.")
    assert terminated and reward == 0.0 and info["verdict"] == "wrong_answer"
    assert "No tool was called (the tools offered: guess)." in info["feedback"].text
    env.reset(options={"index": 0})
    env.step(call("guess", number=1))
    _, reward, terminated, truncated, info = env.step(call("guess", number=3))  # the 2nd message: not run
    assert (terminated or truncated) and reward == 0.0
    assert info["feedback"].text.endswith("The last tool result was:\nhigher")


def test_feedback_fn_reads_the_environment_instance():
    env = TRLEnv(
        GuessEnv, dataset=ROWS, feedback_fn=lambda step: f"The secret was {step.environment.secret}."
    )
    env.reset(options={"index": 2})
    _, _, _, _, info = env.step("no idea")
    assert info["feedback"].text == "The secret was 11." and info["feedback_source"] == "feedback_fn"


class RaisingReset(GuessEnv):
    def reset(self, **row):
        raise KeyError("secret")


class RaisingReward(GuessEnv):
    def get_reward(self) -> float:
        raise RuntimeError("scoreboard offline")


class ListReset(GuessEnv):
    def reset(self, **row):
        super().reset(**row)
        return [{"type": "text", "text": "an image would go here"}]


def no_reward(completions, **kwargs):
    return [None]


@pytest.mark.parametrize(
    ("env_cls", "kwargs", "reason"),
    [
        (RaisingReset, {}, "reset raised KeyError: 'secret'"),
        (RaisingReward, {}, "RaisingReward.get_reward() raised RuntimeError: scoreboard offline"),
        (ListReset, {}, "ListReset.reset() returned list; expected a string or None"),
        (GuessEnv, {"reward_funcs": [lambda **k: [1, 2]]}, "returned 2 rewards for 1 completion"),
    ],
)
def test_a_broken_peer_is_a_judge_error_never_an_exception(env_cls, kwargs, reason):
    env = TRLEnv(env_cls, dataset=ROWS, **kwargs)
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("done")
    assert info["verdict"] == "judge_error" and reward == 0.0 and terminated
    assert reason in info["feedback"].details["reason"] and info["feedback_source"] == "trl:error"


def test_no_reward_source_scoring_is_a_judge_error_and_construction_errors_are_clear():
    class NoReward:
        def reset(self, **row):
            return "hi"

    env = TRLEnv(NoReward, reward_funcs=no_reward)
    env.reset(options={"index": 0})
    assert "no reward source scored this rollout" in env.step("x")[4]["feedback"].details["reason"]
    with pytest.raises(ValueError, match="no reward source: NoReward has no get_reward"):
        TRLEnv(NoReward)

    class Undocumented(GuessEnv):
        def hint(self, x: int) -> str:
            return "?"

    with pytest.raises(ValueError, match=r"Undocumented.hint cannot be a tool"):
        TRLEnv(Undocumented)


def test_gymnasium_make_and_copies_are_fresh_instances():
    sdpo_envs.register(
        "test/TRLGuess-v0",
        entry_point="sdpo_envs.interop.trl_env:TRLEnv",
        environment_factory=GuessEnv,
        dataset=ROWS,
    )
    env = gym.make("test/TRLGuess-v0").unwrapped
    assert isinstance(env, TRLEnv) and env.reset(options={"index": 3})[0].startswith("Find the secret")
    factory = make_env_factory(TRLEnv(GuessEnv, dataset=ROWS))
    assert factory().environment is not factory().environment


def test_sdpo_trains_two_steps_with_the_feedback_in_the_reprompt(tmp_path):
    captured = []

    class Capture:
        def on_teacher_context_built(self, teacher_input_ids, **kwargs):
            captured.append(teacher_input_ids)

        def __getattr__(self, name):
            return lambda *a, **k: None

    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=2, include_environment_feedback=True, **FAST)
    env = TRLEnv(GuessEnv, dataset=ROWS, max_turns=2)
    trainer = SDPOTrainer(model=model, args=args, env=env, processing_class=tokenizer, callbacks=[Capture()])
    trainer.train()
    assert trainer.state.global_step == 2
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for batch in captured for ids in batch]
    assert any("(GuessEnv.get_reward)" in t for t in texts)  # the harvested feedback reached the teacher


def test_grpo_trains_on_a_spec_string_and_judge_errors_are_left_out(tmp_path):
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, env_kwargs={"dataset": ROWS}, **FAST)
    trainer = GRPOTrainer(model=model, args=args, env=f"trl:{__name__}:GuessEnv", processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    broken = GRPOTrainer(
        model=model, args=args, env=TRLEnv(RaisingReward, dataset=ROWS), processing_class=tokenizer
    )
    batch = broken.build_batch([{"task_index": 0}] * 4, "train")
    assert batch.valid.tolist() == [0.0] * 4 and torch.all(batch.advantages == 0)


def test_tool_results_continue_the_conversation_token_exactly():
    """The agent loop appends an env message as the template's difference of two renderings
    (masked out of the loss); a TRL env's tool message must render that way."""
    _, tokenizer = build_tiny_model()
    env = TRLEnv(GuessEnv, dataset=ROWS)
    _, info = env.reset(options={"index": 0})
    tools = info["tools"]
    observation, *_, info = env.step(call("guess", number=1))
    tokens = observation_tokens(tokenizer, info["messages"], tools, {})
    assert "higher" in tokenizer.decode(tokens) and observation == "higher"


class OwnsTheData:
    """A TRL environment that picks its task in reset (TRL then trains without a dataset)."""

    def reset(self, **row) -> str:
        self.word = "policy"
        return f"Spell {self.word!r} backwards, then call check."

    def check(self, answer: str) -> str:
        """Check an answer.

        Args:
            answer: The word, reversed.
        """
        self.right = answer == self.word[::-1]
        return "right" if self.right else "wrong"

    def get_reward(self) -> float:
        return float(getattr(self, "right", False))


def test_an_environment_that_owns_its_data_needs_no_dataset():
    env = TRLEnv(OwnsTheData)
    observation, _ = env.reset(seed=0)
    assert observation == "Spell 'policy' backwards, then call check."
    env.step(call("check", answer="ycilop"))
    assert env.step("done")[1] == 1.0


def test_the_cli_evaluates_a_spec_string_and_answers_a_wrong_one_in_one_line(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    argv = ["eval", "--env", f"trl:{__name__}:GuessEnv", "--env-arg", f"dataset={rows}", "--model", "tiny"]
    argv += ["--tasks", "2", "--samples", "1", "--k", "1", "--max-completion-length", "8"]
    assert main(argv) == 0
    assert "held-out tasks" in capsys.readouterr().out
    assert main(["eval", "--env", "trl:no_such_module:Env", "--model", "tiny"]) == 2
    assert "cannot import module 'no_such_module'" in capsys.readouterr().err
