"""sdpo/ToolUse-v0: tool calling over several turns, judged on the final answer."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sdpo_envs
from environments.tool_use.env import ToolUseEnv
from environments.tool_use.oracle import oracle_actions, play_oracle
from environments.tool_use.parsing import MalformedCall, ToolCall, format_tool_call, parse_tool_calls
from environments.tool_use.tasks import FAMILIES, TaskGenerator, procedural_tasks
from environments.tool_use.toolalpaca import compare_calls, parse_actions, parse_expected
from environments.tool_use.units import UNITS


@pytest.fixture(scope="module")
def env() -> ToolUseEnv:
    env = gym.make("sdpo/ToolUse-v0").unwrapped
    yield env
    env.close()


@pytest.fixture(scope="module")
def static_env() -> ToolUseEnv:
    env = gym.make("sdpo/ToolUse-v0", dataset="toolalpaca").unwrapped
    yield env
    env.close()


def first_task(env: ToolUseEnv, family: str) -> dict:
    return next(env.tasks[i] for i in range(100) if env.tasks[i]["family"] == family)


def call(tool_name: str, /, **arguments) -> str:
    return format_tool_call(tool_name, arguments)


def step_all(env: ToolUseEnv, task: dict, actions: list[str]):
    env.reset(seed=0, options={"task": task})
    for action in actions:
        result = env.step(action)
        if result[2] or result[3]:
            break
    return result


# -- registration and the Gymnasium contract --------------------------------------------------
def test_registered_as_plugin():
    assert "sdpo/ToolUse-v0" in sdpo_envs.registered_envs()
    assert sdpo_envs.loaded_plugins()["tool_use"] == "ok"
    assert gym.spec("sdpo/ToolUse-v0").entry_point == "environments.tool_use.env:ToolUseEnv"


def test_check_env_procedural(env):
    check_env(env)


def test_check_env_toolalpaca(static_env):
    check_env(static_env)


def test_random_text_is_a_deterministic_format_error(env):
    env.reset(seed=5)
    _, reward, terminated, _, info = env.step("just some words, no tags")
    assert (reward, terminated, info["verdict"]) == (0.0, True, "format_error")


def test_never_imports_torch():
    code = (
        "import sys, gymnasium as gym, sdpo_envs\n"
        "from environments.tool_use.oracle import play_oracle\n"
        "env = gym.make('sdpo/ToolUse-v0').unwrapped\n"
        "reward, _ = play_oracle(env, env.tasks[0])\n"
        "assert reward == 1.0, reward\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


# -- prompt, info and message list -----------------------------------------------------------
def test_reset_exposes_tool_schemas_for_chat_templates(env):
    task = first_task(env, "convert")
    _, info = env.reset(options={"task": task})
    names = [schema["function"]["name"] for schema in info["tools"]]
    assert names == task["tools"]
    schema = next(s for s in info["tools"] if s["function"]["name"] == "convert")
    assert schema["type"] == "function"
    params = schema["function"]["parameters"]
    assert params["required"] == ["value", "from_unit", "to_unit"]
    assert params["properties"]["value"]["type"] == "number"
    assert params["properties"]["from_unit"]["enum"] == list(UNITS)
    assert info["messages"][-1]["role"] == "user"
    assert "<tool_call>" in info["messages"][-1]["content"]


def test_tools_can_be_left_out_of_the_prompt():
    env = ToolUseEnv(tools_in_prompt=False)
    obs, info = env.reset(seed=1)
    assert "JSON schemas" not in obs and info["tools"]
    env.close()


def test_messages_are_a_valid_chat_with_tool_role(env):
    task = first_task(env, "convert_calc")
    env.reset(options={"task": task})
    actions = oracle_actions(task)
    for action in actions:
        _, _, terminated, _, info = env.step(action)
    assert terminated
    roles = [m["role"] for m in info["messages"]]
    calls = len(task["reference_calls"])
    assert roles == ["user"] + ["assistant", "tool"] * calls + ["assistant"]
    assistant = [m["content"] for m in info["messages"] if m["role"] == "assistant"]
    assert assistant == actions  # the sampled text, unchanged


# -- the oracle -------------------------------------------------------------------------------
def test_oracle_solves_procedural_tasks(env):
    solved = 0
    for i in range(72):
        task = env.tasks[i]
        reward, info = play_oracle(env, task, seed=i)
        assert reward == 1.0, (task["question"], info["feedback"])
        assert info["success"] and info["verdict"] == "pass"
        solved += 1
    assert solved >= 50
    assert {env.tasks[i]["family"] for i in range(72)} == set(FAMILIES)


def test_oracle_solves_toolalpaca_rows(static_env):
    for i in range(len(static_env.tasks)):
        reward, info = play_oracle(static_env, static_env.tasks[i])
        assert reward == 1.0, info["feedback"]


def test_oracle_solves_rows_stored_in_a_hf_dataset(env):
    # Arrow pads struct columns with None; the env and the oracle must cope.
    rows = [env.tasks[i] for i in range(12)]
    dataset = datasets.Dataset.from_list(rows)
    env2 = ToolUseEnv(dataset=dataset)
    for i in range(len(dataset)):
        reward, info = play_oracle(env2, dataset[i])
        assert reward == 1.0, info["feedback"]
    env2.close()


def test_user_supplied_tool():
    def reverse(text: str) -> str:
        """Reverse a string.

        Args:
            text: The text to reverse.
        """
        return text[::-1]

    env = ToolUseEnv(tools=[reverse])
    task = {
        "question": "What is 'stressed' reversed?",
        "tools": ["reverse"],
        "required_tools": ["reverse"],
        "reference_calls": [{"name": "reverse", "arguments": {"text": "stressed"}}],
        "answer": "desserts",
        "answer_type": "text",
    }
    _, info = env.reset(options={"task": task})
    assert info["tools"][0]["function"]["parameters"]["properties"]["text"]["type"] == "string"
    reward, info = play_oracle(env, task)
    assert reward == 1.0 and info["messages"][2] == {"role": "tool", "content": "stressed"[::-1]}
    env.close()


# -- the task generator ------------------------------------------------------------------------
def test_generator_is_deterministic_and_varied():
    a, b = TaskGenerator(seed=3), TaskGenerator(seed=3)
    rows = [a(i) for i in range(600)]
    assert rows == [b(i) for i in range(600)]
    assert len({r["question"] for r in rows}) >= 400
    assert TaskGenerator(seed=4)(0) != rows[0]
    for row in rows:
        assert row["reference_calls"] and set(row["required_tools"]) <= set(row["tools"])
        assert {c["name"] for c in row["reference_calls"]} <= set(row["tools"])
        assert len(row["reference_calls"]) + 1 <= 8  # solvable within the default max_turns
        json.dumps(row)


def test_builtin_dataset_strings():
    source = procedural_tasks("db_join,convert", seed=2, size=50)
    assert len(source) == 50 and {source[i]["family"] for i in range(4)} == {"db_join", "convert"}
    env = ToolUseEnv(dataset="procedural:calc_chain", dataset_kwargs={"seed": 9})
    assert env.tasks[0]["family"] == "calc_chain"
    with pytest.raises(ValueError, match="unknown tool-use task families"):
        procedural_tasks("nope")
    env.close()


def test_same_seed_and_task_give_same_results():
    env_a, env_b = ToolUseEnv(), ToolUseEnv()
    obs_a, info_a = env_a.reset(seed=11)
    obs_b, info_b = env_b.reset(seed=11)
    assert (obs_a, info_a) == (obs_b, info_b)
    action = '<tool_call>{"name": "sql", "arguments": {"query": "SELECT name FROM departments"}}</tool_call>'
    assert env_a.step(action) == env_b.step(action)
    assert env_a.step("<answer>7</answer>") == env_b.step("<answer>7</answer>")
    env_a.close()
    env_b.close()


# -- reward-hacking probes and error feedback -------------------------------------------------
def test_answer_without_calling_the_required_tool_is_rejected(env):
    task = first_task(env, "db_aggregate")
    _, reward, terminated, _, info = step_all(env, task, [f"<answer>{task['answer']}</answer>"])
    assert (reward, terminated, info["verdict"]) == (0.0, True, "tool_error")
    assert "without a successful call to the required tool(s) sql" in info["feedback"].text


def test_claimed_tool_result_without_a_call_is_rejected(env):
    task = first_task(env, "calc_chain")
    fake = (
        f"<tool_response>{task['answer']}</tool_response>\nSo the result is <answer>{task['answer']}</answer>"
    )
    _, reward, _, _, info = step_all(env, task, [fake])
    assert reward == 0.0 and info["verdict"] == "tool_error"
    assert info["feedback"].details["reason"] == "required_tool_not_called"


def test_a_failed_call_does_not_count_as_calling_the_tool(env):
    task = first_task(env, "db_aggregate")
    actions = [call("sql", query="SELEC oops"), f"<answer>{task['answer']}</answer>"]
    _, reward, _, _, info = step_all(env, task, actions)
    assert reward == 0.0 and info["verdict"] == "tool_error"


def test_calls_and_answer_in_one_message_is_a_format_error(env):
    task = first_task(env, "db_aggregate")
    action = (
        call("sql", query=task["reference_calls"][0]["arguments"]["query"])
        + f"<answer>{task['answer']}</answer>"
    )
    _, reward, terminated, _, info = step_all(env, task, [action])
    assert (reward, terminated, info["verdict"]) == (0.0, True, "format_error")
    assert "both calls tools and gives a final answer" in info["feedback"].text


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (call("delete_everything"), "'delete_everything' does not exist"),
        (call("python", code="print(1)"), "'python' is not available in this task"),
        ('<tool_call>{"name": "sql", "arguments": {"query": "SELECT 1"</tool_call>', "not valid JSON"),
        ("<tool_call>sql(query='SELECT 1')</tool_call>", "not valid JSON"),
        (
            '<tool_call>{"name": "sql", "parameters": {"query": "SELECT 1"}}</tool_call>',
            "unexpected key(s) 'parameters'",
        ),
        ('<tool_call>["sql", "SELECT 1"]</tool_call>', "must be a JSON object"),
        (call("sql", qry="SELECT 1"), "unexpected argument(s) 'qry'"),
        (call("sql"), "missing required argument(s) 'query'"),
        (call("sql", query=42), "'query' of tool 'sql' must be of type string, got integer 42"),
        (call("sql", query="SELECT * FROM nowhere"), "SQL error: no such table: nowhere"),
    ],
)
def test_tool_call_errors_are_reported_and_the_episode_goes_on(env, action, expected):
    task = first_task(env, "db_aggregate")
    env.reset(options={"task": task})
    observation, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated, info["verdict"]) == (0.0, False, False, "tool_error")
    assert expected in observation and expected in info["feedback"].text
    assert info["messages"][-1] == {"role": "tool", "content": observation}
    # The model can recover: follow the reference path from here.
    for follow in oracle_actions(task):
        _, reward, terminated, _, info = env.step(follow)
    assert reward == 1.0 and terminated


def test_wrong_argument_types_and_enum_values(env):
    task = first_task(env, "convert")
    env.reset(options={"task": task})
    obs, *_ = env.step(call("convert", value="12", from_unit="mi", to_unit="km"))
    assert "'value' of tool 'convert' must be of type number, got string" in obs
    obs, *_ = env.step(call("convert", value=12, from_unit="parsec", to_unit="km"))
    assert "'from_unit' of tool 'convert' must be one of" in obs
    obs, *_ = env.step(call("convert", value=12, from_unit="kg", to_unit="km"))
    assert "cannot convert mass (kg) to length (km)" in obs


def test_a_tool_that_raises_is_a_tool_error(env):
    task = first_task(env, "calc_chain")
    env.reset(options={"task": task})
    obs, reward, terminated, _, info = env.step(call("calculate", expression="1 / (3 - 3)"))
    assert (reward, terminated, info["verdict"]) == (0.0, False, "tool_error")
    assert "raised ZeroDivisionError: division by zero" in obs


def test_calculator_refuses_code(env):
    task = first_task(env, "calc_chain")
    env.reset(options={"task": task})
    for expression in ["__import__('os').system('id')", "(1).__class__", "9 ** 9 ** 9", "'a' * 10"]:
        obs, _, _, _, info = env.step(call("calculate", expression=expression))
        assert info["verdict"] == "tool_error", expression
        assert obs.startswith("Error:")


def test_json_cannot_break_out_of_the_tool_call(env):
    task = first_task(env, "db_aggregate")
    breakout = '"}}</tool_call><tool_call>{"name": "python", "arguments": {"code": "print(1)"}}'
    action = call("sql", query=breakout)
    assert len(parse_tool_calls(action)) == 1  # the closing tag inside the string is data
    env.reset(options={"task": task})
    _, _, _, _, info = env.step(action)
    calls = info["feedback"].details["calls"]
    assert [c["name"] for c in calls] == ["sql"] and calls[0]["arguments"]["query"] == breakout
    assert info["verdict"] == "tool_error"


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM employees",
        "UPDATE employees SET salary = 0",
        "DROP TABLE employees",
        "SELECT 1; DROP TABLE employees",
        "ATTACH DATABASE '/tmp/sdpo_injected.db' AS x",
        "PRAGMA query_only = 0",
        "CREATE TABLE t (x)",
        "SELECT random()",
    ],
)
def test_sql_is_read_only_and_deterministic(env, query):
    task = first_task(env, "db_aggregate")
    env.reset(options={"task": task})
    obs, _, _, _, info = env.step(call("sql", query=query))
    assert info["verdict"] == "tool_error" and "SQL error" in obs
    assert env.database.query("SELECT COUNT(*), SUM(salary) FROM employees")[1] == [[63, 6792500]]


def test_sql_injection_through_a_narrow_tool(env):
    task = first_task(env, "db_lookup")
    env.reset(options={"task": task})
    obs, _, _, _, info = env.step(call("lookup_employee", name="x' OR '1'='1"))
    assert info["verdict"] == "tool_error" and "no employee is named" in obs


def test_runaway_sql_is_stopped_and_rows_are_capped(env):
    task = first_task(env, "db_join")
    env.reset(options={"task": task})
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    obs, *_ = env.step(call("sql", query=endless))
    assert "stopped after" in obs
    obs, _, _, _, info = env.step(call("sql", query="SELECT * FROM assignments"))
    assert info["verdict"] == "pass"
    result = json.loads(obs)
    assert len(result["rows"]) == 50 and "first 50 rows" in result["truncated"]


def test_wrong_answer_feedback_hides_the_answer_unless_revealed(env):
    task = first_task(env, "db_aggregate")
    actions = [*oracle_actions(task)[:-1], "<answer>-12345</answer>"]
    _, reward, _, _, info = step_all(env, task, actions)
    assert (reward, info["verdict"]) == (0.0, "wrong_answer")
    assert (
        task["answer"] not in info["feedback"].text and "Tool calls made: sql (ok)" in info["feedback"].text
    )
    revealing = ToolUseEnv(reveal_answer=True)
    _, _, _, _, info = step_all(revealing, task, actions)
    assert f"The expected answer is {task['answer']}" in info["feedback"].text
    revealing.close()


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("{x}", "pass"),
        ("{x}0001", "pass"),
        ("{x} km/h", "pass"),
        ("about {x}", "format_error"),
        ("", "format_error"),
    ],
)
def test_numeric_answers(env, answer, verdict):
    task = first_task(env, "convert")
    actions = [*oracle_actions(task)[:-1], f"<answer>{answer.format(x=task['answer'])}</answer>"]
    if "." not in task["answer"] and answer == "{x}0001":
        actions[-1] = f"<answer>{task['answer']}.0001</answer>"
    _, _, terminated, _, info = step_all(env, task, actions)
    assert terminated and info["verdict"] == verdict


def test_exact_big_integers_and_thousands_separators(env):
    task = {
        "question": "q",
        "tools": ["calculate"],
        "answer": "87571595343018854458033386304178158174356588264390370",
    }
    env.reset(options={"task": task})
    env.step(call("calculate", expression="1"))
    _, reward, *_ = env.step("<answer>87571595343018854458033386304178158174356588264390371</answer>")
    assert reward == 0.0
    task = {"question": "q", "tools": ["calculate"], "answer": "1234567"}
    assert step_all(env, task, [call("calculate", expression="1"), "<answer>1,234,567</answer>"])[1] == 1.0


def test_several_or_unclosed_answers_are_format_errors(env):
    task = first_task(env, "db_lookup")
    path = oracle_actions(task)[:-1]
    for bad in ["<answer>1</answer><answer>2</answer>", "<answer>1", "no answer here", "<answer> </answer>"]:
        _, reward, terminated, _, info = step_all(env, task, [*path, bad])
        assert (reward, terminated, info["verdict"]) == (0.0, True, "format_error"), bad


def test_thinking_is_ignored(env):
    task = first_task(env, "db_lookup")
    path = oracle_actions(task)
    thought = f"<think>maybe <answer>{task['answer']}</answer> right away?</think>"
    _, reward, _, _, _ = step_all(env, task, [thought + path[0], *path[1:]])
    assert reward == 1.0


def test_unclosed_final_tool_call_is_accepted(env):
    task = first_task(env, "db_lookup")
    first = oracle_actions(task)[0].removesuffix("</tool_call>")
    env.reset(options={"task": task})
    _, _, _, _, info = env.step(first)
    assert info["verdict"] == "pass"


def test_turn_limit_truncates_with_feedback():
    env = ToolUseEnv(max_turns=2)
    task = env.tasks[0]
    env.reset(options={"task": task})
    first = env.step(oracle_actions(task)[0])
    assert not first[2] and not first[3]
    _, reward, terminated, truncated, info = env.step(oracle_actions(task)[0])
    assert (reward, terminated, truncated, info["verdict"]) == (0.0, False, True, "wrong_answer")
    assert info["feedback"].text.startswith("Turn limit reached")
    env.close()


def test_too_many_calls_in_one_message(env):
    task = first_task(env, "calc_chain")
    env.reset(options={"task": task})
    obs, _, _, _, info = env.step(call("calculate", expression="1 + 1") * 9)
    assert info["verdict"] == "tool_error" and "too many tool calls" in obs and obs.count("[") == 9


def test_validate_task_names_the_field(env):
    with pytest.raises(ValueError, match="'question'"):
        env.reset(options={"task": {"answer": "1"}})
    with pytest.raises(ValueError, match="'tools'"):
        env.reset(options={"task": {"question": "q", "answer": "1", "tools": ["teleport"]}})
    with pytest.raises(ValueError, match="'required_tools'"):
        env.reset(
            options={
                "task": {"question": "q", "answer": "1", "tools": ["sql"], "required_tools": ["convert"]}
            }
        )
    with pytest.raises(ValueError, match="'answer'"):
        env.reset(options={"task": {"question": "q", "answer": "many", "answer_type": "number"}})
    with pytest.raises(ValueError, match="'expected_actions'"):
        env.reset(
            options={"task": {"instruction": "i", "api_documentation": "d", "expected_actions": "nothing"}}
        )


# -- the sandboxed python tool ---------------------------------------------------------------
def _bwrap_reason() -> str | None:
    try:
        from sdpo_envs.sandbox import available_backends

        return available_backends()["bwrap"]
    except Exception as exc:  # the sandbox is still being built
        return f"sandbox not ready: {type(exc).__name__}: {exc}"


def test_python_tool_without_a_usable_sandbox_is_a_judge_error():
    env = ToolUseEnv(dataset="procedural:python", sandbox_backend="no-such-backend")
    task = env.tasks[0]
    env.reset(options={"task": task})
    _, reward, terminated, _, info = env.step(oracle_actions(task)[0])
    assert (reward, terminated, info["verdict"]) == (0.0, True, "judge_error")
    env.close()


@pytest.mark.skipif(_bwrap_reason() is not None, reason=f"bwrap sandbox unavailable: {_bwrap_reason()}")
def test_python_tool_runs_in_the_sandbox():
    env = ToolUseEnv(dataset="procedural:python", sandbox_backend="bwrap")
    for i in range(3):
        reward, info = play_oracle(env, env.tasks[i])
        assert reward == 1.0, info["feedback"]
    env.reset(options={"task": env.tasks[0]})
    obs, _, _, _, info = env.step(call("python", code="raise SystemExit('boom')"))
    assert info["verdict"] == "tool_error" and "boom" in obs
    env.close()


# -- static ToolAlpaca rows -----------------------------------------------------------------------
def _alpaca(static_env: ToolUseEnv, task_id: str) -> dict:
    return next(t for t in static_env.tasks if t["task_id"] == task_id)


def test_toolalpaca_order_does_not_matter_and_values_are_normalised(static_env):
    task = _alpaca(static_env, "toolalpaca/weather/2")
    action = (
        'Thought: forecast first.\nAction: getForecast\nAction Input: {"city": "denver", "days": "3"}\n'
        'Observation: ...\nAction: getCurrentWeather\nAction Input: {"units": "imperial", "city": "Denver "}\n'
        "Final Answer: done"
    )
    static_env.reset(options={"task": task})
    _, reward, terminated, _, info = static_env.step(action)
    assert (reward, terminated, info["verdict"]) == (1.0, True, "pass")


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            'Action: getCurrentWeather\nAction Input: {"city": "Denver", "units": "imperial"}',
            "missing call: getForecast",
        ),
        (
            'Action: getCurrentWeather\nAction Input: {"city": "Denver", "units": "metric"}\n'
            'Action: getForecast\nAction Input: {"city": "Denver", "days": 3}',
            "getCurrentWeather: argument 'units' has the wrong value \"metric\"",
        ),
        (
            'Action: getCurrentWeather\nAction Input: {"city": "Denver"}\n'
            'Action: getForecast\nAction Input: {"city": "Denver", "days": 3}',
            "getCurrentWeather: missing argument(s) 'units'",
        ),
        (
            'Action: getCurrentWeather\nAction Input: {"city": "Denver", "units": "imperial"}\n'
            'Action: getForecast\nAction Input: {"city": "Denver", "days": 3}\n'
            'Action: getForecast\nAction Input: {"city": "Denver", "days": 3}',
            "unexpected call: getForecast",
        ),
    ],
)
def test_toolalpaca_mismatch_feedback(static_env, action, expected):
    static_env.reset(options={"task": _alpaca(static_env, "toolalpaca/weather/2")})
    _, reward, _, _, info = static_env.step(action)
    assert (reward, info["verdict"]) == (0.0, "wrong_answer")
    assert expected in info["feedback"].text
    assert "(expected" not in info["feedback"].text  # expected values stay hidden by default


def test_toolalpaca_reveals_expected_values_only_when_asked():
    env = ToolUseEnv(dataset="toolalpaca", reveal_answer=True)
    env.reset(options={"task": _alpaca(env, "toolalpaca/weather/2")})
    _, _, _, _, info = env.step(
        'Action: getCurrentWeather\nAction Input: {"city": "Denver", "units": "metric"}\n'
        'Action: getForecast\nAction Input: {"city": "Denver", "days": 3}'
    )
    assert '(expected "imperial")' in info["feedback"].text
    env.close()


def test_toolalpaca_format_errors_and_tool_call_syntax(static_env):
    task = _alpaca(static_env, "toolalpaca/books/2")
    static_env.reset(options={"task": task})
    _, _, _, _, info = static_env.step("I would look the book up.")
    assert info["verdict"] == "format_error" and "no API call found" in info["feedback"].text
    static_env.reset(options={"task": task})
    _, _, _, _, info = static_env.step("Action: getBookByISBN\nAction Input: {isbn: 9780262033848}")
    assert info["verdict"] == "format_error" and "not valid JSON" in info["feedback"].text
    static_env.reset(options={"task": task})
    _, reward, _, _, _ = static_env.step(call("getBookByISBN", isbn="9780262033848"))
    assert reward == 1.0


def test_compare_calls_is_a_multiset_match():
    expected = [ToolCall("f", {"x": 1}), ToolCall("f", {"x": 1}), ToolCall("g", {})]
    assert (
        compare_calls([ToolCall("g", {}), ToolCall("f", {"x": 1.0}), ToolCall("f", {"x": "1"})], expected)
        == []
    )
    assert compare_calls([ToolCall("f", {"x": 1}), ToolCall("g", {})], expected) == ["missing call: f"]
    assert parse_expected([{"name": "f", "arguments": '{"x": 1}'}]) == [ToolCall("f", {"x": 1})]
    calls, errors = parse_actions("Action: f\nAction: g\nAction Input: {}")
    assert calls == [ToolCall("g", {})] and "no 'Action Input:' line" in errors[0]


def test_parse_tool_calls_shapes():
    parsed = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": "{\\"k\\": 1}"}</tool_call> text '
        '<tool_call>{"name": "b"} junk</tool_call><tool_call> {"name": "c", "arguments": {}}'
    )
    assert parsed[0] == ToolCall("a", {"k": 1})
    assert (
        isinstance(parsed[1], MalformedCall) and "unexpected text after the JSON object" in parsed[1].message
    )
    assert parsed[2] == ToolCall("c", {})
