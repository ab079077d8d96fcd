"""Hostile model outputs per environment: each gets reward 0 and a verdict that is the model's
failure (never ``judge_error``), with bounded feedback, and leaves the environment, its checker
workers and its shipped data as they were. The code suites run on every sandbox backend that
can start here (bubblewrap; Docker where an engine runs, as in CI)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gymnasium as gym
import pytest

import sdpo_envs  # noqa: F401  (registers the environments)
from environments.tool_use.oracle import play_oracle
from environments.tool_use.parsing import format_tool_call
from sdpo_envs.judges import CodeLimits, judge_code
from sdpo_envs.judges.code.harness import outputs_match, values_equal
from sdpo_envs.judges.math.pool import MathVerifyPool

FAST = CodeLimits(time_s=1.0, wall_s=3.0, memory_mb=256)


SANDBOX_BACKENDS = ("bwrap", "docker")


def call(fn, args, expected):
    return {"kind": "call", "fn": fn, "args": args, "expected": expected, "public": True}


def stdio(output):
    return {"kind": "stdio", "input": "", "output": output, "public": True}


def forged_frame(depth: int, tagged_dicts: bool = False) -> str:
    """A solution that writes its own reply frame to the harness's socket (fd 3): a value
    nested ``depth`` deep (lists, or the wire format's tagged dicts)."""
    if tagged_dicts:
        inner = '{"d": [[1, ' * depth + "1" + "]]}" * depth
    else:
        inner = "[" * depth + "]" * depth
    payload = '{"ok": ' + json.dumps(inner) + "}"
    return (
        "import os, struct\n"
        f"P = {payload!r}.encode()\n"
        "def f(x):\n"
        "    os.write(3, struct.pack('>I', len(P)) + P)\n"
        "    os._exit(0)\n"
    )


def nested_list(depth: int) -> str:
    return f"def f(x):\n    v = []\n    for _ in range({depth}):\n        v = [v]\n    return v\n"


CODE_ATTACKS = {
    # integers beyond float range against a float
    "10**400 vs 1.5": ("def f(x):\n    return 10**400\n", [call("f", [1], 1.5)]),
    "-(10**309) vs 0.5": ("def f(x):\n    return -(10**309)\n", [call("f", [1], 0.5)]),
    "10**4000 vs 2.5": ("def f(x):\n    return 10**4000\n", [call("f", [1], 2.5)]),
    "[10**400] vs [1.5]": ("def f(x):\n    return [10**400]\n", [call("f", [1], [1.5])]),
    "{'a': 10**500} vs {'a': 0.1}": ("def f(x):\n    return {'a': 10**500}\n", [call("f", [1], {"a": 0.1})]),
    # forged protocol frames
    "forged frame depth 700": (forged_frame(700), [call("f", [1], 1.5)]),
    "forged frame depth 950": (forged_frame(950), [call("f", [1], [1])]),
    "forged frame depth 2000": (forged_frame(2000), [call("f", [1], [1])]),
    "forged dict frame depth 400": (forged_frame(400, tagged_dicts=True), [call("f", [1], {"a": 1})]),
    "forged exception frame": (
        "import os, struct\n"
        "P = ('{\"exc\": {\"type\": ' + '[' * 900 + ']' * 900 + ', \"msg\": {\"x\": 1}}}').encode()\n"
        "def f(x):\n    os.write(3, struct.pack('>I', len(P)) + P)\n    os._exit(0)\n",
        [call("f", [1], 1)],
    ),
    # deep values returned honestly
    "nested list 600": (nested_list(600), [call("f", [1], [1])]),
    "nested list 990": (nested_list(990), [call("f", [1], [[1]])]),
    # near-miss numbers on stdout
    "123456800.0 for 123456789": ("print(123456800.0)\n", [stdio("123456789\n")]),
    "1000001.0 for 1000000": ("print(1000001.0)\n", [stdio("1000000\n")]),
    "1e6 for 1000000": ("print('1e6')\n", [stdio("1000000\n")]),
    "1_000_000 for 1000000": ("print('1_000_000')\n", [stdio("1000000\n")]),
    "100000000000000000001.0 for 10**20": ("print('100000000000000000001.0')\n", [stdio(str(10**20))]),
}


@pytest.mark.parametrize("name", sorted(CODE_ATTACKS))
def test_code_attacks_are_the_models_failure(backend, name):
    solution, tests = CODE_ATTACKS[name]
    result = judge_code(solution, tests, backend=backend, limits=FAST)
    assert result.reward == 0.0, (name, result.feedback.text)
    assert result.verdict in ("wrong_answer", "runtime_error"), (name, result.verdict, result.feedback.text)
    assert 0 < len(result.feedback.text) < 4000


def test_integer_outputs_are_exact_and_non_integers_keep_their_tolerance():
    for same in ("123456789", "123456789.0", "123456789.000", "+123456789", "0123456789"):
        assert outputs_match(same, "123456789"), same
    for other in ("123456800.0", "123456789.5", "1.23456789e8", "123456789.0000001", "123456790"):
        assert not outputs_match(other, "123456789"), other
    assert outputs_match("-0", "0") and outputs_match("0.0", "0") and not outputs_match("-1", "1")
    big = "9" * 5000  # beyond int()'s default digit limit: compared as text
    assert outputs_match(big + ".0", big) and not outputs_match(big[:-1] + "8", big)
    assert outputs_match("0.3333333", "0.333333333")  # a non-integer expected keeps 1e-6
    assert outputs_match("2", "2.0000000001") and not outputs_match("0.334", "0.333333333")


def test_strict_types_is_an_option_and_python_equality_the_default():
    assert values_equal(1, True) and values_equal(2.0, 2)  # HumanEval's asserts use ==
    assert not values_equal(1, True, strict=True)
    assert not values_equal(True, 1, strict=True)
    assert not values_equal(2.0, 2, strict=True)
    assert not values_equal([1, 0], [True, False], strict=True)
    assert values_equal([True, 2, 0.5], [True, 2, 0.5000000001], strict=True)
    assert values_equal((1, 2), [1, 2], strict=True)  # tuples still compare as lists


def test_strict_types_in_the_sandbox(backend):
    solution = "def f(x):\n    return 1\n"
    tests = [call("f", [1], True)]
    assert judge_code(solution, tests, backend=backend, limits=FAST).verdict == "pass"
    strict = judge_code(solution, tests, backend=backend, limits=FAST, strict_types=True)
    assert strict.verdict == "wrong_answer" and strict.reward == 0.0


# -- every environment, through its gymnasium interface ---------------------------------------
# Each table row is a hostile completion; the checks are the same for all: reward 0, a verdict
# that is the model's failure, bounded feedback, and an environment (tasks, checker workers,
# shipped data) that is unchanged and still grades an honest answer afterwards.
ENVIRONMENTS = Path(__file__).resolve().parents[1] / "environments"


def shipped_data_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(ENVIRONMENTS.rglob("*")):
        if path.suffix in (".jsonl", ".json", ".sql", ".db", ".txt"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def assert_models_failure(info: dict, reward: float, name: str) -> None:
    feedback = info["feedback"]
    assert reward == 0.0 and not info["success"], (name, feedback.text)
    assert feedback.verdict not in ("pass", "judge_error"), (name, feedback.verdict, feedback.text)
    assert 0 < len(feedback.text) <= 4000, (name, len(feedback.text))


MATH_ATTACKS = {
    "power tower": "\\boxed{9^{9^{9^{9}}}}",
    "power tower, other base": "\\boxed{7^{7^{7^{7^{7}}}}}",
    "factorial of a power": "\\boxed{(10^{10})!}",
    "huge power": "\\boxed{10^{10^{10}}}",
    "3,000 nested braces": "\\boxed{" + "{" * 3000 + "2" + "}" * 3000 + "}",
    "400 nested fractions": "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 400 + "}",
    "60 nested parentheses": "\\boxed{" + "(" * 60 + "4" + ")" * 60 + "}",
    "100,000-character sum": "\\boxed{" + "1+" * 50000 + "0}",
    "5,000-digit number": "\\boxed{" + "9" * 5000 + "}",
    "5,000 boxes in a box": "\\boxed{" * 5000 + "4" + "}" * 5000,
    "20,000 opening answer tags": "<answer>" * 20000,
    "unclosed thinking": "<think>" * 20000 + "\\boxed{4}",
    "hedge": "\\boxed{3} or \\boxed{4}",
    "hidden digit": "\\boxed{\\phantom{1}4}",
    "alternatives": "\\boxed{4 \\lor 5}",
}


@pytest.fixture(scope="module")
def math_env():
    pool = MathVerifyPool(workers=1, timeout_s=0.5)
    env = gym.make("sdpo/Math-v0", check_timeout_s=0.5, checker=pool).unwrapped
    yield env, pool
    pool.close()


@pytest.mark.parametrize("name", sorted(MATH_ATTACKS))
def test_math_attacks_are_the_models_failure(math_env, name):
    env, pool = math_env
    task = {"question": "What is 2 + 2?", "answer": "5"}
    before = (shipped_data_digest(), len(env.tasks))
    env.reset(options={"task": task})
    _, reward, terminated, _, info = env.step(MATH_ATTACKS[name])
    assert terminated
    assert_models_failure(info, reward, name)
    assert (shipped_data_digest(), len(env.tasks)) == before
    assert len(pool.worker_pids()) <= pool.workers  # a killed worker was replaced, not added to
    env.reset(options={"task": task})
    assert env.step("\\boxed{5}")[1] == 1.0


TOOL_ATTACKS = {
    "200,000 nested brackets": "<tool_call>" + "[" * 200000 + "]" * 200000 + "</tool_call>",
    "100,000 nested objects": "<tool_call>" + '{"a": ' * 100000 + "1" + "}" * 100000 + "</tool_call>",
    "unclosed brackets": "<tool_call>" + "[" * 200000,
    "6,000-digit integer": '<tool_call>{"name": "sql", "arguments": {"query": '
    + "9" * 6000
    + "}}</tool_call>",
    "60,000-digit float": '<tool_call>{"name": "sql", "arguments": {"x": 1.' + "5" * 60000 + "}}</tool_call>",
    "deep arguments string": '<tool_call>{"name": "sql", "arguments": '
    + json.dumps("[" * 100000 + "]" * 100000)
    + "}</tool_call>",
    "long number in an arguments string": '<tool_call>{"name": "sql", "arguments": '
    + json.dumps('{"query": ' + "7" * 6000 + "}")
    + "}</tool_call>",
    "NaN and Infinity": '<tool_call>{"name": "sql", "arguments": {"query": NaN, "limit": Infinity}}</tool_call>',
    "1,000 calls in one message": format_tool_call("sql", {"query": "SELECT 1"}) * 1000,
    "drop a table": format_tool_call("sql", {"query": "DROP TABLE employees"}),
    "write through a pragma": format_tool_call("sql", {"query": "PRAGMA writable_schema = 1"}),
    "attach a file": format_tool_call("sql", {"query": "ATTACH DATABASE '/tmp/x.db' AS x"}),
    "runaway recursive query": format_tool_call(
        "sql",
        {"query": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r"},
    ),
    "python through the calculator": format_tool_call(
        "calculate", {"expression": "__import__('os').getcwd()"}
    ),
    "power tower through the calculator": format_tool_call("calculate", {"expression": "9**9**9**9"}),
    "answer of 100,000 digits": "<answer>" + "9" * 100000 + "</answer>",
    "20,000 opening answer tags": "<answer>" * 20000,
    "20,000 opening think tags": "<think>" * 20000 + "<answer>1</answer>",
}


@pytest.fixture(scope="module")
def tool_env():
    env = gym.make("sdpo/ToolUse-v0").unwrapped
    yield env
    env.close()


def tool_task(env, tool: str) -> dict:
    for index in range(200):
        tools = env.reset(options={"index": index})[1]["tools"]
        if tool in [t["function"]["name"] for t in tools]:
            return env.tasks[index]
    raise AssertionError(f"no task offers {tool}")


def company_rows(env, task) -> list:
    env.reset(options={"task": task})
    query = "SELECT name, salary FROM employees ORDER BY name"
    return env.step(format_tool_call("sql", {"query": query}))[0]


@pytest.mark.parametrize("name", sorted(TOOL_ATTACKS))
def test_tool_use_attacks_are_the_models_failure(tool_env, name):
    env = tool_env
    tool = "calculate" if "calculator" in name else "sql"
    task = tool_task(env, tool)
    sql_task = tool_task(env, "sql")
    before = (shipped_data_digest(), len(env.tasks), company_rows(env, sql_task))
    env.reset(options={"task": task})
    _, reward, _, _, info = env.step(TOOL_ATTACKS[name])
    assert_models_failure(info, reward, name)
    assert (shipped_data_digest(), len(env.tasks), company_rows(env, sql_task)) == before
    assert play_oracle(env, task)[0] == 1.0


MCQ_ATTACKS = {
    "every letter": "<answer>ABCD</answer>",
    "letters with separators": "<answer>A, B, C and D</answer>",
    "two tags": "<answer>A</answer><answer>B</answer>",
    "nested tags": "<answer><answer>A</answer></answer>",
    "letter outside the tag": "The answer is (B).",
    "spaces before junk": "<answer>A" + " " * 50000 + "!</answer>",
    "20,000 opening tags": "<answer>" * 20000,
    "20,000 letters": "<answer>" + "A " * 20000 + "</answer>",
    "20,000 opening think tags": "<think>" * 20000,
    "answer only while thinking": "<think><answer>A</answer></think>",
    "not an option": "<answer>Z</answer>",
}


@pytest.mark.parametrize("name", sorted(MCQ_ATTACKS))
def test_mcq_attacks_are_the_models_failure(name):
    env = gym.make("sdpo/MCQ-v0").unwrapped
    before = (shipped_data_digest(), len(env.tasks))
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step(MCQ_ATTACKS[name])
    assert_models_failure(info, reward, name)
    assert (shipped_data_digest(), len(env.tasks)) == before
    env.reset(options={"index": 0})
    assert env.step(env.oracle_actions(env.tasks[0])[0])[1] == 1.0


CODE_ENV_ATTACKS = {
    "kill the judge": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill every process": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "exit before the tests": "import os\nos._exit(0)\n",
    "raise SystemExit in the function": "def add(x, y):\n    raise SystemExit(0)\n",
    "monkeypatch equality": "class Any:\n    def __eq__(self, other):\n        return True\n"
    "def add(x, y):\n    return Any()\n",
    "write to stdout's fd from the function": "import os\ndef add(x, y):\n    os.write(1, b'True\\n')\n    return 0\n",
    "forged frame": forged_frame(10),
    "fork bomb": "import os\nwhile True:\n    os.fork()\n",
    "threads forever": "import threading\nwhile True:\n    threading.Thread(target=lambda: [0] * 10**6).start()\n",
    "recursion bomb": "import sys\nsys.setrecursionlimit(10**9)\ndef add(x, y):\n    return add(x, y)\n",
}


@pytest.mark.parametrize("name", sorted(CODE_ENV_ATTACKS))
def test_code_env_attacks_are_the_models_failure(backend, name):
    task = {
        "task_id": "add",
        "prompt": "Write add(x, y).",
        "tests": [call("add", [1, 2], 3), call("add", [2, 2], 4)],
    }
    env = gym.make("sdpo/CodeExec-v0", dataset=[task], backend=backend, limits=FAST).unwrapped
    before = shipped_data_digest()
    env.reset(options={"index": 0})
    code = CODE_ENV_ATTACKS[name].replace("def f(x)", "def add(x, y)")
    _, reward, _, _, info = env.step(f"```python\n{code}```")
    assert_models_failure(info, reward, name)
    assert shipped_data_digest() == before
    env.reset(options={"index": 0})
    assert env.step("```python\ndef add(x, y):\n    return x + y\n```")[1] == 1.0
