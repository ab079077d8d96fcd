"""A classic verifiers environment (``vf.SingleTurnEnv``, ``vf.MultiTurnEnv``, ``vf.ToolEnv``,
datasets built in process) trained here through ``VerifiersEnv``: real verifiers rollouts,
driven one model turn per step, scored by the environment's own rubric."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from datasets import Dataset
from interop_training import ScriptedGenerator, environment_text, grpo_trainer, sdpo_trainer, use_generator

from sdpo_envs import make_env_factory

vf = pytest.importorskip("verifiers", reason="the interop extra (verifiers==0.3.1) is not installed")
from sdpo_envs.interop.verifiers_env import VerifiersEnv  # noqa: E402

QUESTIONS = Dataset.from_list([{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)])
ENV_MODULE = """
import verifiers as vf
from datasets import Dataset

def load_environment(n: int = 4):
    dataset = Dataset.from_list([{"question": f"Say {i}.", "answer": str(i)} for i in range(n)])
    def exact(completion, answer):
        return 1.0 if completion[-1].content.strip() == answer else 0.0
    return vf.SingleTurnEnv(dataset=dataset, rubric=vf.Rubric(funcs=[exact]))
"""


def math_env(*extra_funcs) -> vf.SingleTurnEnv:
    """The canonical verifiers example: an XML answer, a correctness and a format reward."""
    parser = vf.XMLParser(["answer"])

    def correct_answer(completion, answer, parser):
        return 1.0 if parser.parse_answer(completion) == answer else 0.0

    rubric = vf.Rubric(
        funcs=[correct_answer, parser.get_format_reward_func(), *extra_funcs],
        weights=[1.0, 0.2, *[1.0] * len(extra_funcs)],
        parser=parser,
    )
    return vf.SingleTurnEnv(
        dataset=QUESTIONS, parser=parser, rubric=rubric, system_prompt="Reply with <answer>...</answer>."
    )


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def exact(completion, answer) -> float:
    return 1.0 if str(completion[-1].content).strip() == answer else 0.0


class GuessEnv(vf.MultiTurnEnv):
    """Guess the answer; a wrong guess is told so and may try again."""

    async def env_response(self, messages, state, **kwargs):
        return [vf.UserMessage(content=f"{messages[-1].content.strip()!r} is not it; try again.")]

    @vf.stop
    async def guessed(self, state) -> bool:
        steps = state["trajectory"]
        return bool(steps) and str(steps[-1]["completion"][-1].content).strip() == state["answer"]


def test_sdpo_trains_two_steps_with_the_rubric_in_the_teachers_reprompt(tmp_path):
    trainer, teacher = sdpo_trainer(VerifiersEnv(math_env()), tmp_path)
    trainer.train()
    assert trainer.state.global_step == 2
    shown = [t for t in teacher.texts if "Rubric: correct_answer = 0 (weight 1)" in t]
    assert shown, "the rubric's per-function scores should reach the teacher"
    assert any("The parser (XMLParser) found no answer" in t and "<answer>" in t for t in shown)
    rewards = [e["rewards/env/mean"] for e in trainer.state.log_history if "rewards/env/mean" in e]
    assert len(rewards) == 2 and all(0.0 <= r <= 1.2 for r in rewards)


def test_single_turn_step_scores_with_the_rubric_and_names_its_source():
    env = VerifiersEnv(math_env())
    observation, info = env.reset(options={"index": 3})
    assert observation == "What is 3 + 3?" and info["messages"][0]["role"] == "system"
    _, reward, terminated, _, info = env.step("<answer>6</answer>")
    assert (reward, terminated, info["verdict"], info["success"]) == (pytest.approx(1.2), True, "pass", True)
    assert info["feedback_source"] == "verifiers:rubric"
    assert info["feedback"].details["metrics"]["correct_answer"] == 1.0
    env.reset(options={"index": 3})
    _, reward, _, _, info = env.step("<answer>7</answer>")
    assert info["verdict"] == "wrong_answer" and reward == pytest.approx(0.2)


def test_multi_turn_env_stays_multi_turn_with_its_messages_as_observations():
    env = VerifiersEnv(GuessEnv(dataset=QUESTIONS, rubric=vf.Rubric(funcs=[exact]), max_turns=3))
    env.reset(options={"index": 2})
    observation, reward, terminated, _, info = env.step("5")
    assert (observation, reward, terminated) == ("'5' is not it; try again.", 0.0, False)
    assert info["messages"][-1] == {"role": "user", "content": observation}
    _, reward, terminated, _, info = env.step("4")
    assert (reward, terminated, info["verdict"]) == (1.0, True, "pass")
    assert info["feedback_source"] == "verifiers:rubric+last_env_message"
    assert "Last environment message:\n'5' is not it; try again." in info["feedback"].text
    env.reset(options={"index": 2})
    for guess in ("1", "2", "3"):  # the environment's own max_turns ends it
        _, reward, terminated, _, info = env.step(guess)
    assert terminated and info["verdict"] == "wrong_answer" and info["turn"] == 3


def test_tool_env_runs_hermes_tool_calls_token_exact_through_the_agent_loop(tmp_path):
    env = VerifiersEnv(
        vf.ToolEnv(dataset=QUESTIONS, tools=[add], rubric=vf.Rubric(funcs=[exact]), max_turns=4)
    )
    trainer, _ = sdpo_trainer(env, tmp_path, steps=1, max_completion_length=200, max_prompt_length=None)

    def script(text: str, turn: int) -> str:
        n = int(text.split("What is ")[-1].split(" ")[0])
        return (
            f'<tool_call>{{"name": "add", "arguments": {{"a": {n}, "b": {n}}}}}</tool_call>'
            if turn == 0
            else str(2 * n)
        )

    use_generator(trainer, ScriptedGenerator(trainer.processing_class, script))
    rollouts = trainer.rollout([{"task_index": 5}] * 4, "train").rollouts
    for rollout in rollouts:
        assert rollout.turns == 2 and rollout.feedback.success and rollout.env_reward == 1.0
        assert "<tool_response>\n10\n</tool_response>" in environment_text(trainer.processing_class, rollout)
        assert rollout.completion_mask[0] == 1 and rollout.completion_mask[-1] == 1
    assert "add_calls = 1 (metric)" in rollouts[0].feedback.text
    trainer.train()


def test_env_id_spec_string_and_gymnasium_make_load_a_published_environment(tmp_path, monkeypatch):
    (tmp_path / "say_number_env.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env_factory("verifiers:say-number-env", env_args={"n": 3})()
    assert isinstance(env, VerifiersEnv) and len(env.tasks) == 3
    env.reset(options={"index": 1})
    assert env.step("1")[1] == 1.0
    made = gym.make("interop/Verifiers-v0", env="say-number-env", env_args={"n": 3}).unwrapped
    assert made.vf_env is env.vf_env  # loaded once per process
    with pytest.raises(ValueError, match="Could not import 'no-such-env' environment"):
        make_env_factory("verifiers:no-such-env")()


class BrokenEnv(GuessEnv):
    async def env_response(self, messages, state, **kwargs):
        raise RuntimeError("environment server down")


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (
            lambda: BrokenEnv(dataset=QUESTIONS, rubric=vf.Rubric(funcs=[exact]), max_turns=3),
            "environment server down",
        ),
        (lambda: math_env(_raises), "reward function(s) raised: _raises: ValueError: no grader"),
        (lambda: math_env(_nan), "reward is nan, not a finite number"),
    ],
)
def test_a_failing_peer_is_a_judge_error_with_the_reason(env, reason):
    wrapped = VerifiersEnv(env())
    wrapped.reset(options={"index": 0})
    _, reward, terminated, _, info = wrapped.step("no")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "judge_error")
    assert reason in info["feedback"].details["reason"] and info["feedback_source"] == "verifiers:error"


def _raises(completion) -> float:
    raise ValueError("no grader")


def _nan(completion) -> float:
    return float("nan")


class FailsAtSetup(GuessEnv):
    async def setup_state(self, state):
        raise KeyError("sandbox")


def test_setup_failure_starts_the_episode_and_its_first_step_is_a_judge_error():
    env = VerifiersEnv(FailsAtSetup(dataset=QUESTIONS, rubric=vf.Rubric(funcs=[exact])))
    observation, info = env.reset(options={"index": 1})
    assert observation == "What is 1 + 1?"  # the task's own prompt
    _, _, terminated, _, info = env.step("2")
    assert (
        terminated and info["verdict"] == "judge_error" and "KeyError" in info["feedback"].details["reason"]
    )


def test_grpo_leaves_judge_errors_out_of_the_loss(tmp_path):
    trainer = grpo_trainer(lambda: VerifiersEnv(math_env(_raises)), tmp_path)
    batch = trainer.build_batch([{"task_index": 0}] * 4, "train")
    assert batch.valid.sum() == 0 and torch.all(batch.advantages == 0)
    trainer.train()
    assert trainer.state.log_history[0]["judge_error_rate"] == 1.0


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        VerifiersEnv(math_env(), split="test")
    with pytest.raises(TypeError, match=r"expected a vf\.Environment"):
        VerifiersEnv(lambda: "not an env")
    eval_only = vf.SingleTurnEnv(eval_dataset=QUESTIONS, rubric=vf.Rubric(funcs=[exact]))
    with pytest.raises(ValueError, match="has no train dataset: pass split='eval'"):
        VerifiersEnv(eval_only)
    assert len(VerifiersEnv(eval_only, split="eval").tasks) == 8
    env = VerifiersEnv(math_env())
    with pytest.raises(ValueError, match="task field 'prompt' must be a non-empty list"):
        env.reset(options={"task": {"question": "no prompt"}})
