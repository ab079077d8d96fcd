"""sdpo/MCQ-v0: one letter in <answer>, reward 1/0, scalar-only feedback."""

from __future__ import annotations

import datasets
import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sdpo_envs
from environments.mcq.env import MCQEnv
from environments.mcq.oracle import oracle_action

ROW = {
    "question": "Which gas do plants absorb for photosynthesis?",
    "options": ["Oxygen", "Carbon dioxide", "Helium"],
    "answer": "B",
}


@pytest.fixture(scope="module")
def env() -> MCQEnv:
    return gym.make("sdpo/MCQ-v0").unwrapped


def answer(env: MCQEnv, text: str, task: dict = ROW):
    env.reset(seed=0, options={"task": task})
    return env.step(text)


def test_registered_as_plugin():
    assert "sdpo/MCQ-v0" in sdpo_envs.registered_envs()
    assert sdpo_envs.loaded_plugins()["mcq"] == "ok"
    assert gym.spec("sdpo/MCQ-v0").entry_point == "environments.mcq.env:MCQEnv"


def test_check_env(env):
    check_env(env)


def test_prompt_lists_lettered_options(env):
    observation, info = env.reset(options={"task": ROW})
    assert "A. Oxygen\nB. Carbon dioxide\nC. Helium" in observation
    assert "<answer>" in observation and info["messages"] == [{"role": "user", "content": observation}]


def test_oracle_solves_the_builtin_set(env):
    assert len(env.tasks) >= 50
    for i in range(len(env.tasks)):
        env.reset(seed=i, options={"index": i})
        _, reward, terminated, truncated, info = env.step(oracle_action(env.tasks[i]))
        assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True), env.tasks[i]


def test_builtin_answers_are_spread_over_letters(env):
    letters = [env.tasks[i]["answer"] for i in range(len(env.tasks))]
    assert set(letters) == {"A", "B", "C", "D"} and max(letters.count(x) for x in "ABCD") < len(letters) / 2


def test_wrong_answer_feedback_is_scalar_only(env):
    _, reward, terminated, _, info = answer(env, "<answer>A</answer>")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "wrong_answer")
    assert info["feedback"].text == "Incorrect."


@pytest.mark.parametrize(
    "text",
    [
        "<answer>B</answer>",
        "<answer> b </answer>",
        "<answer>(B)</answer>",
        "<answer>B.</answer>",
        "<answer>Option B</answer>",
        "<answer>B) Carbon dioxide</answer>",
        "Reasoning first.\n<answer>B</answer>",
    ],
)
def test_accepted_spellings(env, text):
    _, reward, _, _, info = answer(env, text)
    assert reward == 1.0 and info["feedback"].text == "Correct."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<answer>A, B</answer>", "several letters"),
        ("<answer>B or C</answer>", "several letters"),
        ("<answer>AB</answer>", "several letters"),
        ("The answer is B.", "outside the <answer> tag"),
        ("B", "outside the <answer> tag"),
        ("I pick (B) for sure", "outside the <answer> tag"),
        ("<answer>D</answer>", "D is not one of the options (A, B, C)"),
        ("<answer>Carbon dioxide</answer>", "only the letter of one option"),
        ("<answer>B) Oxygen</answer>", "only the letter of one option"),
        ("<answer>A</answer> <answer>B</answer>", "2 <answer> tags"),
        ("<answer>B", "not closed"),
        ("<answer></answer>", "empty"),
        ("", "no <answer> tag"),
        ("<think><answer>B</answer></think>", "no <answer> tag"),
    ],
)
def test_format_errors_are_explained(env, text, reason):
    _, reward, terminated, _, info = answer(env, text)
    assert (reward, terminated, info["verdict"]) == (0.0, True, "format_error")
    assert reason in info["feedback"].text and "<answer>B</answer>" in info["feedback"].text


def test_row_shapes():
    env = MCQEnv(dataset=[ROW])
    dict_row = {"question": "2 + 2?", "options": {"A": "3", "B": "4"}, "answer": "B"}
    arc_row = {
        "question": "Hot?",
        "choices": {"label": ["1", "2", "3"], "text": ["ice", "fire", "snow"]},
        "answerKey": "2",
    }
    mmlu_row = {"question": "Largest?", "choices": ["1", "10", "100", "5"], "answer": 2}
    for row, letter in [(dict_row, "B"), (arc_row, "B"), (mmlu_row, "C")]:
        observation, _ = env.reset(options={"task": row})
        assert f"{letter}. " in observation
        assert env.step(f"<answer>{letter}</answer>")[1] == 1.0
    hf = MCQEnv(dataset=datasets.Dataset.from_list([mmlu_row, mmlu_row]))
    hf.reset(options={"index": 1})
    assert hf.step("<answer>C</answer>")[1] == 1.0


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"options": ["a", "b"], "answer": "A"}, "'question'"),
        ({"question": "q", "answer": "A"}, "'options'"),
        ({"question": "q", "options": ["only one"], "answer": "A"}, "'options'"),
        ({"question": "q", "options": ["a", "b"], "answer": "C"}, "'answer'"),
        ({"question": "q", "options": ["a", "b"], "answer": 5}, "'answer'"),
    ],
)
def test_invalid_rows_name_the_field(env, row, field):
    with pytest.raises(ValueError, match=field):
        env.reset(options={"task": row})


def test_same_seed_same_everything():
    a, b = MCQEnv(), MCQEnv()
    assert a.reset(seed=7) == b.reset(seed=7)
    assert a.step("<answer>C</answer>") == b.step("<answer>C</answer>")
