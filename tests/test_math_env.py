"""``sdpo/Math-v0``: extraction policy, reward-hacking probes, oracle, data sources, checker errors."""

from __future__ import annotations

import subprocess
import sys

import datasets
import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sdpo_envs  # noqa: F401  (registers the plugins)
from environments.math_check.env import MathEnv
from environments.math_check.judge import GradingPolicy
from environments.math_check.oracle import oracle_answer
from environments.math_check.tasks import (
    REASONING_GYM_GENERATORS,
    gsm8k_sample,
    normalize_task,
    reasoning_gym,
)


@pytest.fixture(scope="module")
def env() -> MathEnv:
    return gym.make("sdpo/Math-v0").unwrapped


def judge(env: MathEnv, completion: str, answer: str = "4") -> tuple[float, dict]:
    env.reset(options={"task": {"question": "What is 2 + 2?", "answer": answer}})
    _, reward, terminated, truncated, info = env.step(completion)
    assert terminated and not truncated
    return reward, info


def test_registered_and_passes_check_env():
    env = gym.make("sdpo/Math-v0")
    assert isinstance(env.unwrapped, MathEnv)
    check_env(env.unwrapped, skip_render_check=True)


def test_prompt_asks_for_a_boxed_answer(env):
    observation, info = env.reset(options={"task": {"question": "What is 2 + 2?", "answer": "4"}})
    assert observation.startswith("What is 2 + 2?") and "\\boxed{}" in observation
    assert info["messages"] == [{"role": "user", "content": observation}]


def test_random_text_is_a_deterministic_format_error(env):
    env.reset(seed=5)
    actions = [env.action_space.sample() for _ in range(20)]
    for action in actions:
        first = judge(env, action)
        assert first[0] == 0.0 and first[1]["verdict"] == "format_error"
        assert judge(env, action)[1]["feedback"] == first[1]["feedback"]


def test_same_seed_same_task_same_observation_reward_feedback():
    runs = []
    for _ in range(2):
        env = gym.make("sdpo/Math-v0").unwrapped
        observation, info = env.reset(seed=11)
        _, reward, _, _, step_info = env.step("So we get \\boxed{17}.")
        runs.append((observation, info["task_id"], reward, step_info["feedback"]))
    assert runs[0] == runs[1]


# -- reward-hacking probes: (completion, expected answer, verdict, feedback code) ----------------
PROBES = [
    # the extraction policy
    ("2 + 2 = 4, so the answer is 4.", "4", "format_error", "no_answer"),  # answer only in the text
    ("<think>It is \\boxed{4}.</think> Done.", "4", "format_error", "no_answer"),  # only in the reasoning
    ("<think>2 + 2 = \\boxed{4}", "4", "format_error", "unclosed_thinking"),
    ("Maybe \\boxed{3}, or rather \\boxed{4}.", "4", "format_error", "several_answers"),  # a hedge
    ("First \\boxed{4}; again: \\boxed{ 4 }.", "4", "pass", "correct"),  # the same box twice is fine
    ("The answer is \\boxed{}.", "4", "format_error", "empty_answer"),
    ("The answer is \\boxed{4", "4", "format_error", "unclosed_answer"),
    ("The answer is \\boxed 4", "4", "format_error", "malformed_box"),
    ("\\boxed{x = \\boxed{4}}", "4", "format_error", "nested_box"),  # a box inside other content
    # the right value among others, or not stated as a value
    ("\\boxed{3, 4, 5}", "4", "wrong_answer", "wrong_value"),
    ("\\boxed{x=3 \\text{ or } 4}", "4", "wrong_answer", "alternatives"),
    ("\\boxed{4 \\text{ (or } 5)}", "5", "wrong_answer", "alternatives"),  # math-verify reads 5
    ("\\boxed{4 \\lor 5}", "5", "wrong_answer", "alternatives"),  # math-verify reads 5
    ("\\boxed{\\pm 4}", "4", "wrong_answer", "wrong_value"),
    ("\\boxed{[3, 5]}", "4", "wrong_answer", "wrong_value"),
    ("\\boxed{\\neq 4}", "4", "wrong_answer", "not_a_value"),  # math-verify reads 4
    ("\\boxed{\\not 4}", "4", "wrong_answer", "not_a_value"),  # math-verify reads 4
    ("\\boxed{\\approx 4}", "4", "wrong_answer", "not_a_value"),  # math-verify reads 4
    ("\\boxed{\\le 4}", "4", "wrong_answer", "not_a_value"),  # math-verify reads 4
    ("\\boxed{x \\neq 4}", "4", "wrong_answer", "not_a_value"),
    # LaTeX that renders like something else than what math-verify reads
    ("\\boxed{4 \\\\ 5}", "5", "format_error", "several_lines"),  # two lines, read as 5
    ("\\boxed{2 2}", "4", "format_error", "spaced_digits"),  # read as 2 + 2
    ("\\boxed{4\\phantom{5}}", "9", "format_error", "hidden_content"),  # shows 4, read as 9
    ("\\boxed{\\color{white}{3}4}", "4", "format_error", "hidden_content"),
    ("\\boxed{4_{5}}", "4", "format_error", "number_subscript"),  # 4 in base 5?
    # unreadable answers
    ("\\boxed{\\frac{1}{}}", "4", "format_error", "unparseable"),
    # accepted on purpose: the box states the value
    ("\\boxed{4}", "4", "pass", "correct"),
    ("\\boxed{\\text{4}}", "4", "pass", "correct"),
    ("\\boxed{\\mathbf{4}}", "4", "pass", "correct"),
    ("\\boxed{4\\%}", "4", "pass", "correct"),
    ("\\boxed{4 \\text{ apples}}", "4", "pass", "correct"),
    ("\\boxed{\\$4}", "4", "pass", "correct"),
    ("\\boxed{x = 4}", "4", "pass", "correct"),
    ("\\boxed{2+2}", "4", "pass", "correct"),
    ("\\boxed{1,495}", "1495", "pass", "correct"),
    ("\\boxed{\\frac{3}{4}}", "0.75", "pass", "correct"),
    ("\\boxed{4.}", "4", "pass", "correct"),  # a full stop after the value
    ("The answer is \\boxed{8717446.}", "8717446", "pass", "correct"),
    ("\\boxed{8717446 .}", "8717446", "pass", "correct"),
    ("\\boxed{x = 4.}", "4", "pass", "correct"),
    ("\\boxed{4.5.}", "4.5", "pass", "correct"),
    ("\\boxed{4...}", "4", "format_error", "unparseable"),  # an ellipsis is not a full stop
    ("\\boxed{\\boxed{4}}", "4", "pass", "correct"),  # math-verify reads nested boxes
    ("\\boxed{ \\boxed{\\fbox{4}} }", "4", "pass", "correct"),
    ("\\boxed{10\\%}", "0.1", "pass", "correct"),  # math-verify reads 10% as 0.1 ...
    ("\\boxed{75\\%}", "\\frac{3}{4}", "pass", "correct"),
    ("\\boxed{0.04}", "4\\%", "pass", "correct"),
    ("\\boxed{4\\%}", "0.04", "pass", "correct"),
    ("\\boxed{5\\%}", "0.04", "wrong_answer", "wrong_value"),
    ("\\boxed{\\text{four}}", "4", "wrong_answer", "wrong_value"),
    ("\\boxed{5}", "4", "wrong_answer", "wrong_value"),
]


@pytest.mark.parametrize(("completion", "answer", "verdict", "code"), PROBES)
def test_probe(env, completion, answer, verdict, code):
    reward, info = judge(env, completion, answer)
    feedback = info["feedback"]
    assert (feedback.verdict, feedback.details["code"]) == (verdict, code), feedback.text
    assert reward == (1.0 if verdict == "pass" else 0.0) and info["success"] == (verdict == "pass")


def test_wrong_answer_quotes_the_model_and_hides_the_expected_value(env):
    _, info = judge(env, "I get \\boxed{17}", "4")
    text = info["feedback"].text
    assert "\\boxed{17}" in text and "4" not in text and "expected" not in info["feedback"].details


def test_reveal_answer_policy_names_the_expected_value():
    env = gym.make("sdpo/Math-v0", reveal_answer=True).unwrapped
    _, info = judge(env, "I get \\boxed{17}", "4")
    assert info["feedback"].text.endswith("The expected answer is 4.")


def test_answer_tag_format():
    env = gym.make("sdpo/Math-v0", answer_format="tag", answer_tag="final").unwrapped
    observation, _ = env.reset(options={"task": {"question": "2 + 2?", "answer": "4"}})
    assert "<final></final>" in observation
    assert judge(env, "so <final>4</final>")[1]["verdict"] == "pass"
    assert judge(env, "so <final>$\\boxed{4}$</final>")[1]["verdict"] == "pass"
    assert judge(env, "so \\boxed{4}")[1]["feedback"].details["code"] == "no_answer"
    assert judge(env, "<final>3</final> <final>4</final>")[1]["feedback"].details["code"] == "several_answers"
    assert judge(env, "<final>4")[1]["feedback"].details["code"] == "unclosed_answer"


# (completion, expected answer, verdict, feedback code) under the two non-default flags
STRICT_PROBES = [
    ("\\boxed{\\boxed{4}}", "4", "format_error", "nested_box"),
    ("\\boxed{4\\%}", "0.04", "wrong_answer", "wrong_value"),  # ... unless a percent is a unit
    ("\\boxed{0.04}", "4\\%", "wrong_answer", "wrong_value"),
    ("\\boxed{4\\%}", "4", "pass", "correct"),
    ("\\boxed{10\\%}", "0.1", "wrong_answer", "wrong_value"),
]


@pytest.mark.parametrize(("completion", "answer", "verdict", "code"), STRICT_PROBES)
def test_percent_as_unit_and_nested_boxes_are_flags(completion, answer, verdict, code):
    strict = gym.make("sdpo/Math-v0", percent_as_unit=True, unwrap_nested_boxes=False).unwrapped
    feedback = judge(strict, completion, answer)[1]["feedback"]
    assert (feedback.verdict, feedback.details["code"]) == (verdict, code), feedback.text


@pytest.mark.parametrize(
    "answer",
    [
        "9^{9^{9^{9}}}",  # SymPy evaluates the power tower
        "(10^{10})!",
        "10^{10^{10}}",
        "99^{99^{99}}",
        "(10^{9})! - (10^{9})!",
    ],
)
def test_an_answer_the_checker_cannot_finish_is_the_models_failure(answer):
    env = gym.make("sdpo/Math-v0", check_timeout_s=0.5).unwrapped
    reward, info = judge(env, f"\\boxed{{{answer}}}", "4")
    feedback = info["feedback"]
    assert reward == 0.0 and (feedback.verdict, feedback.details["code"]) == ("wrong_answer", "too_complex")
    assert "too large or too complex" in feedback.text and len(feedback.text) < 1000
    assert judge(env, "\\boxed{4}", "4")[1]["verdict"] == "pass"  # the env recovers


def test_a_checker_failure_is_the_judges_when_the_reference_is_slow_too():
    env = gym.make("sdpo/Math-v0", check_timeout_s=0.5).unwrapped
    slow_reference = "{" * 3000 + "4" + "}" * 3000  # parsing it alone outlasts the timeout
    reward, info = judge(env, "\\boxed{4}", slow_reference)
    assert reward == 0.0 and info["verdict"] == "judge_error" and not info["success"]
    assert "timed out" in info["feedback"].details["reason"]


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("{" * 3000 + "2" + "}" * 3000, "too_deep"),
        ("\\frac{1}{" * 400 + "2" + "}" * 400, "too_deep"),
        ("(" * 50 + "2" + ")" * 50, "too_deep"),
        ("[" * 200 + "2" + "]" * 200, "too_deep"),
        ("1+" * 50000 + "1", "too_long"),
        ("x" * 1001, "too_long"),
        ("9" * 4301, "too_many_digits"),
        ("0." + "3" * 2000, "too_long"),
        ("0." + "3" * 5000, "too_many_digits"),
    ],
)
def test_answers_too_big_to_check_are_refused_before_parsing(env, answer, code):
    reward, info = judge(env, f"\\boxed{{{answer}}}", "4")
    feedback = info["feedback"]
    assert reward == 0.0 and (feedback.verdict, feedback.details["code"]) == ("format_error", code)
    assert len(feedback.text) < 1000


def test_size_limits_widen_to_what_the_reference_needs(env):
    deep = "\\frac{1}{" * 14 + "2" + "}" * 14
    assert judge(env, f"\\boxed{{{deep}}}", deep)[1]["verdict"] == "pass"
    digits = str(2**3000)  # 904 digits, under every limit
    assert judge(env, f"\\boxed{{{digits}}}", "2^{3000}")[1]["verdict"] == "pass"


def test_unparseable_reference_is_a_judge_error(env):
    assert judge(env, "\\boxed{4}", "\\frac{1}{}")[1]["feedback"].details["code"] == "bad_reference"


# -- tasks --------------------------------------------------------------------------------------
def test_gsm8k_answers_are_normalised():
    task = normalize_task({"question": "q", "answer": "1,000 + 495 = <<1000+495=1495>>1495\n#### 1,495"})
    assert task["answer"] == "1495" and task["solution"].endswith("#### 1,495")
    assert normalize_task({"question": "q", "answer": 12})["answer"] == "12"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"answer": "4"}, "question"),
        ({"question": " ", "answer": "4"}, "question"),
        ({"question": "q"}, "answer"),
        ({"question": "q", "answer": ["4"]}, "answer"),
        ({"question": "q", "answer": "work #### "}, "answer"),
    ],
)
def test_invalid_task_names_the_field(env, row, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        env.reset(options={"task": row})


def test_datasets_rows_and_index_option():
    rows = datasets.Dataset.from_list([{"question": "What is 6 * 7?", "answer": "6 * 7 = 42\n#### 42"}])
    env = gym.make("sdpo/Math-v0", dataset=rows).unwrapped
    observation, _ = env.reset(options={"index": 0})
    assert observation.startswith("What is 6 * 7?")
    assert env.step("\\boxed{42}")[1] == 1.0


def test_reasoning_gym_tasks_are_seeded_and_configurable():
    env = gym.make("sdpo/Math-v0", dataset="reasoning_gym:basic_arithmetic").unwrapped
    first, info = env.reset(options={"index": 7})
    assert (
        env.reset(options={"index": 7})[0] == first
        and info["task_id"] == "reasoning_gym:basic_arithmetic/0/7"
    )
    other_seed = reasoning_gym("basic_arithmetic", seed=1)[7]["question"]
    assert other_seed != env.tasks[7]["question"]
    knobs = {"min_terms": 5, "max_terms": 5, "min_digits": 3, "max_digits": 3}
    hard = gym.make("sdpo/Math-v0", dataset="reasoning_gym:basic_arithmetic", dataset_kwargs=knobs).unwrapped
    assert hard.tasks[0]["question"] != env.tasks[0]["question"]


def test_unvetted_reasoning_gym_generator_is_refused():
    with pytest.raises(ValueError, match="not offered"):
        gym.make("sdpo/Math-v0", dataset="reasoning_gym:word_sorting")


def test_oracle_solves_gsm8k_sample_and_reasoning_gym_tasks():
    tasks = list(gsm8k_sample())
    for name in sorted(REASONING_GYM_GENERATORS):
        source = reasoning_gym(name, seed=3)
        tasks += [source[i] for i in range(3)]
    assert len(tasks) >= 50
    env = gym.make("sdpo/Math-v0").unwrapped
    for task in tasks:
        env.reset(options={"task": task})
        _, reward, _, _, info = env.step(oracle_answer(task))
        assert reward == 1.0, (task, info["feedback"])
    tagged = gym.make("sdpo/Math-v0", answer_format="tag").unwrapped
    for task in tasks[:5]:
        tagged.reset(options={"task": task})
        assert tagged.step(oracle_answer(task, tagged.policy))[1] == 1.0


def test_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="answer_format"):
        GradingPolicy(answer_format="json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="answer_tag"):
        GradingPolicy(answer_tag="<x>")


def test_env_package_never_imports_torch():
    code = (
        "import sys, gymnasium as gym, sdpo_envs\n"
        "env = gym.make('sdpo/Math-v0', dataset='reasoning_gym:chain_sum')\n"
        "env.reset(seed=0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_feedback_can_leave_out_the_models_own_answer():
    from sdpo_envs import make_env_factory

    rows = [{"question": "What is 2 + 3?", "answer": "5"}]
    quiet = make_env_factory("sdpo/Math-v0", dataset=rows, quote_answer=False, reveal_answer=True)()
    quiet.reset(options={"index": 0})
    _, reward, _, _, info = quiet.step("The final answer is \\boxed{7}.")
    assert reward == 0.0 and info["feedback"].verdict == "wrong_answer"
    assert info["feedback"].text == "Your final answer is incorrect. The expected answer is 5."
    loud = make_env_factory("sdpo/Math-v0", dataset=rows)()
    loud.reset(options={"index": 0})
    assert "\\boxed{7}" in loud.step("The final answer is \\boxed{7}.")[4]["feedback"].text
