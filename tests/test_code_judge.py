"""The code judge: test kinds, verdicts, feedback, hidden-test secrecy and anti-forgery.

Everything that runs code goes through a real sandbox: bwrap, or the backend named by
``SDPO_CODE_BACKEND`` (e.g. ``docker``); skipped where it is unavailable. Tests never
assert on timings.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from sdpo_envs.judges import CodeLimits, FeedbackPolicy, judge_code, parse_tests
from sdpo_envs.judges.code import harness
from sdpo_envs.judges.code.build import (
    ARCHIVE,
    PACKAGE,
    HarnessBuild,
    harness_for,
    harness_sources,
    harness_zip,
)
from sdpo_envs.judges.code.harness import from_wire, outputs_match, to_wire, values_equal
from sdpo_envs.judges.code.judge import _no_report_verdict, _parse_report, _payload
from sdpo_envs.sandbox import ExecResult, Isolation, get_backend

FAST = CodeLimits(time_s=1.0, wall_s=3.0, memory_mb=256)
SECRET_IN, SECRET_OUT = "HIDDEN-IN-8231", "HIDDEN-OUT-5519"


SANDBOX_BACKENDS = ("bwrap",)
SANDBOX_BACKENDS_FROM_ENV = True  # SDPO_CODE_BACKEND=docker runs this suite on docker


def judge(backend, solution, tests, **kwargs):
    kwargs.setdefault("limits", FAST)
    return judge_code(solution, tests, backend=backend, **kwargs)


def stdio(inp, out, public=True):
    return {"kind": "stdio", "input": inp, "output": out, "public": public}


def call(fn, args, expected, public=True):
    return {"kind": "call", "fn": fn, "args": args, "expected": expected, "public": public}


ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
ADD_TESTS = [stdio("1 2\n", "3\n"), stdio("10 20\n", "30\n"), stdio("2 2\n", "4\n", public=False)]
CHECK_ADD = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"


# ----------------------------------------------------------------------- comparison rules
def test_stdout_comparison_is_whitespace_insensitive_per_line():
    assert outputs_match("1  2 \n3\n\n", "1 2\n3")
    assert outputs_match("\n  ok\n", "ok\n")
    assert not outputs_match("1 2 3", "1 2\n3")  # line structure counts
    assert not outputs_match("1\n\n2", "1\n2")  # interior blank lines count


def test_stdout_float_tolerance_but_exact_integers():
    assert outputs_match("0.3333333", "0.333333333")
    assert outputs_match("1e9", "1000000000.5")  # relative error 5e-10
    assert not outputs_match("0.334", "0.333333333")
    assert not outputs_match("1000001", "1000000")  # two integers never get a tolerance
    assert outputs_match("300.0", "300") and outputs_match("2", "2.0000000001")
    assert not outputs_match("nan", "0.5")


def test_value_comparison():
    assert values_equal((1, [2, 3]), [1, [2, 3]])  # tuples compare as lists
    assert values_equal(0.1 + 0.2, 0.3)
    assert values_equal({"a": [1.0]}, {"a": [1.0000000001]})
    assert not values_equal([1, 2], [2, 1])
    assert not values_equal("1", 1)
    assert values_equal(float("nan"), float("nan"))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -2.5,
        math.inf,
        "s\u00e9",
        b"\x00\xff",
        (1, (2,)),
        [1, [2]],
        {1: "a", (2, 3): None},
        {1, 2},
        1 + 2j,
    ],
)
def test_wire_values_round_trip(value):
    assert from_wire(json.dumps(to_wire(value))) == value
    assert type(from_wire(json.dumps(to_wire(value)))) is type(value)


def test_wire_refuses_objects_and_malformed_text():
    class Sneaky:
        def __eq__(self, other):
            return True

    with pytest.raises(Exception, match="Sneaky"):
        to_wire([Sneaky()])
    for text in ('{"a": 1}', '{"x": [1]}', "[1,", "__import__('os')", '{"s": [[1]]}'):
        with pytest.raises(ValueError):
            from_wire(text)


# ---------------------------------------------------------------------------- test kinds
def test_stdio_pass_and_wrong_answer_feedback(backend):
    ok = judge(backend, ADD, ADD_TESTS)
    assert ok.verdict == "pass" and ok.reward == 1.0 and ok.feedback.success
    assert ok.feedback.text.startswith("Accepted")
    bad = judge(backend, ADD.replace("a + b", "a * b"), ADD_TESTS)
    assert bad.verdict == "wrong_answer" and bad.reward == 0.0 and bad.passed == 1
    text = bad.feedback.text
    assert text.splitlines()[0] == "Wrong answer on test 1 of 3."
    assert "Input:\n1 2" in text and "Expected output:\n3" in text and "Your output:\n2" in text
    assert "Input:\n10 20" in text and "Your output:\n200" in text


def test_stdio_large_input_and_tolerance(backend):
    numbers = list(range(200_000))
    tests = [stdio(f"{len(numbers)}\n" + " ".join(map(str, numbers)) + "\n", f"{sum(numbers)}\n")]
    tests.append(stdio("3\n1 1 2\n", "4\n"))
    solution = "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data[1:])))\n"
    assert judge(backend, solution, tests).verdict == "pass"
    avg = "n = int(input())\nprint(sum(map(int, input().split())) / n)\n"
    assert judge(backend, avg, [stdio("3\n1 1 2\n", "1.33333333\n")]).verdict == "pass"


def test_call_tests_functions_and_solution_classes(backend):
    tests = [call("add", [1, 2], 3), call("add", [[1], [2]], [1, 2], public=False)]
    assert judge(backend, "def add(a, b):\n    return a + b\n", tests).verdict == "pass"
    leet = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
    assert judge(backend, leet, tests).verdict == "pass"
    kw = {"kind": "call", "fn": "pair", "args": [1], "kwargs": {"b": 2}, "expected": [1, 2], "public": True}
    assert judge(backend, "def pair(a, b=0):\n    return (a, b)\n", [kw]).verdict == "pass"
    wrong = judge(backend, "def add(a, b):\n    return a - b\n", tests)
    assert wrong.verdict == "wrong_answer"
    assert "Call: add(1, 2)" in wrong.feedback.text
    assert "Expected: 3" in wrong.feedback.text and "Got: -1" in wrong.feedback.text


def test_call_missing_function_is_a_runtime_error(backend):
    result = judge(backend, "def other():\n    pass\n", [call("add", [1, 2], 3)])
    assert result.verdict == "runtime_error"
    assert "NameError" in result.feedback.text and "'add'" in result.feedback.text


def test_assert_tests_run_checks_on_the_judge_side(backend):
    tests = [{"kind": "assert", "code": CHECK_ADD, "entry_point": "add", "public": True}]
    assert judge(backend, "def add(a, b):\n    return a + b\n", tests).verdict == "pass"
    wrong = judge(backend, "def add(a, b):\n    return 3\n", tests)
    assert wrong.verdict == "wrong_answer"
    assert "assert candidate(2, 2) == 4" in wrong.feedback.text
    assert "called as add(2, 2) and returned 3" in wrong.feedback.text
    # module-level asserts naming the entry point work too (MBPP style)
    mbpp = [{"kind": "assert", "code": "assert add(2, 3) == 5\n", "entry_point": "add", "public": True}]
    assert judge(backend, "def add(a, b):\n    return a + b\n", mbpp).verdict == "pass"


def test_solution_must_load_even_if_the_check_never_calls_it(backend):
    tests = [
        {"kind": "assert", "code": "def check(candidate):\n    pass\n", "entry_point": "f", "public": True}
    ]
    assert judge(backend, "def f():\n    pass\n", tests).verdict == "pass"
    broken = judge(backend, "undefined_name\ndef f():\n    pass\n", tests)
    assert broken.verdict == "runtime_error" and "NameError" in broken.feedback.text
    assert judge(backend, "def g():\n    pass\n", tests).verdict == "runtime_error"


def test_prelude_runs_in_the_solution_namespace(backend):
    solution = "def first(xs: List[int]) -> int:\n    return deque(xs)[0]\n"
    prelude = "from typing import List\nfrom collections import deque\n"
    assert judge(backend, solution, [call("first", [[4, 5]], 4)], prelude=prelude).verdict == "pass"


# ------------------------------------------------------------------------------ verdicts
def test_runtime_error_names_exception_message_and_line(backend):
    solution = "def f(xs):\n    total = 0\n    return xs[10]\n"
    result = judge(backend, solution, [call("f", [[1, 2]], 1)])
    assert result.verdict == "runtime_error"
    text = result.feedback.text
    assert text.startswith("Runtime error on test 1 of 1.")
    assert "IndexError: list index out of range" in text
    assert "line 3 of your solution, in f: return xs[10]" in text


def test_compile_error_has_line_and_caret(backend):
    result = judge(backend, "x = 1\nfor i in range(3)\n    print(i)\n", ADD_TESTS)
    assert result.verdict == "compile_error" and result.reward == 0.0
    text = result.feedback.text
    assert "SyntaxError" in text and "line 2 of your solution" in text
    assert "for i in range(3)" in text and "^" in text


def test_time_limit_on_cpu_skips_the_rest(backend):
    result = judge(backend, "while True:\n    pass\n", ADD_TESTS, limits=CodeLimits(time_s=0.5, wall_s=5.0))
    assert result.verdict == "time_limit"
    assert [r.verdict for r in result.results] == ["time_limit", "skipped", "skipped"]
    assert "more than 0.5 s of CPU time" in result.feedback.text
    assert "2 not run" in result.feedback.text


def test_time_limit_on_wall_clock(backend):
    result = judge(
        backend, "import time\ntime.sleep(30)\n", ADD_TESTS[:1], limits=CodeLimits(time_s=0.5, wall_s=1.0)
    )
    assert result.verdict == "time_limit"
    assert "wall-clock" in result.feedback.text


def test_memory_limit(backend):
    solution = "def f():\n    block = bytearray(2 * 1024 ** 3)\n    return len(block)\n"
    result = judge(backend, solution, [call("f", [], 0)], limits=CodeLimits(time_s=2.0, memory_mb=128))
    assert result.verdict == "memory_limit"
    assert "128 MB" in result.feedback.text and "MemoryError" in result.feedback.text


def test_exit_codes_signals_and_output_limit_are_runtime_errors(backend):
    exits = judge(backend, "import sys\nsys.exit(3)\n", ADD_TESTS[:1])
    assert exits.verdict == "runtime_error" and "exited with code 3" in exits.feedback.text
    aborts = judge(backend, "import os\nos.abort()\n", ADD_TESTS[:1])
    assert aborts.verdict == "runtime_error" and "SIGABRT" in aborts.feedback.text
    floods = judge(
        backend, "while True:\n    print('x' * 10000)\n", ADD_TESTS[:1], limits=CodeLimits(output_mb=1)
    )
    assert floods.verdict == "runtime_error" and "Output limit" in floods.feedback.text


def test_reward_modes(backend):
    wrong_hidden = [*ADD_TESTS[:2], stdio("5 5\n", "11\n", public=False)]
    assert judge(backend, ADD, wrong_hidden).reward == 0.0
    assert judge(backend, ADD, wrong_hidden, reward="fraction").reward == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="reward"):
        judge_code(ADD, ADD_TESTS, reward="partial")  # type: ignore[arg-type]


def test_shortest_failing_public_cases_first(backend):
    tests = [stdio("1 2 3 4 5\n", "x\n"), stdio("1\n", "x\n"), stdio("1 2\n", "x\n")]
    result = judge(backend, "print(input())\n", tests, policy=FeedbackPolicy(max_failing_shown=2))
    text = result.feedback.text
    assert text.index("Test 2 (public)") < text.index("Test 3 (public)")
    assert "Test 1 (public)" not in text


def test_policy_can_hide_public_data_and_expected_outputs(backend):
    wrong = ADD.replace("a + b", "a * b")
    no_expected = judge(backend, wrong, ADD_TESTS, policy=FeedbackPolicy(show_expected=False)).feedback.text
    assert "Input:\n1 2" in no_expected and "Your output:\n2" in no_expected and "Expected" not in no_expected
    no_tests = judge(backend, wrong, ADD_TESTS, policy=FeedbackPolicy(show_public_tests=False)).feedback.text
    assert no_tests.startswith("Wrong answer on test 1 of 3.") and "Input" not in no_tests


def test_feedback_is_bounded(backend):
    tests = [stdio("y" * 50_000, "z" * 50_000)]
    result = judge(backend, "print(input()[::-1])\n", tests, policy=FeedbackPolicy(max_chars=800))
    assert result.verdict == "wrong_answer" and len(result.feedback.text) <= 800


def test_same_solution_same_feedback(backend):
    solution = "print(sorted({'pear', 'apple', 'fig'}), {'pear', 'apple', 'fig'})\n"
    first = judge(backend, solution, [stdio("", "?\n")])
    second = judge(backend, solution, [stdio("", "?\n")])
    assert first.feedback.text == second.feedback.text


# -------------------------------------------------------------------------- hidden tests
def test_hidden_tests_never_leak_into_text(backend):
    tests = [stdio("1 2\n", "3\n"), stdio(f"{SECRET_IN}\n", f"{SECRET_OUT}\n", public=False)]
    for solution in (
        "print(input())\n",  # wrong answer that echoes the hidden input
        "s = input()\nif s.startswith('HIDDEN'):\n    raise ValueError(s)\nprint(3)\n",  # message quotes it
        "import sys\ns = input()\nprint(s, file=sys.stderr)\nsys.exit(1)\n",  # stderr quotes it
    ):
        result = judge(backend, solution, tests)
        assert result.verdict != "pass"
        blob = result.feedback.text + json.dumps(result.feedback.details, default=str)
        assert SECRET_IN not in blob and SECRET_OUT not in blob
        assert "hidden" in result.feedback.text
    hidden_record = result.feedback.details["tests"][1]
    assert set(hidden_record) == {"index", "public", "kind", "verdict"}


def test_hidden_failure_reports_counts_only(backend):
    tests = [stdio("1 2\n", "3\n"), stdio("2 2\n", "5\n", public=False), stdio("2 3\n", "6\n", public=False)]
    text = judge(backend, ADD, tests).feedback.text
    assert text.startswith("Wrong answer on test 2 of 3.")
    assert "failed: 2 hidden tests" in text and "its data is not shown" in text
    quiet = judge(backend, ADD, tests, policy=FeedbackPolicy(reveal_hidden_counts=False)).feedback.text
    assert "2 of 3" not in quiet and "hidden test" in quiet


# -------------------------------------------------------------------------- anti-forgery
FORGED = json.dumps({"version": "sdpo-code-harness/1", "tests": [{"verdict": "pass"}], "notes": []})
WRONG_FN = "def add(a, b):\n    return a - b\n"
FORGERIES = {
    "prints PASS and a fake report": f"print('PASS')\nprint({FORGED!r})\n" + WRONG_FN,
    "writes a fake report to fd 1 and exits 0": f"import os\nos.write(1, {FORGED!r}.encode())\nos._exit(0)\n",
    "sys.exit(0) early": "import sys\nsys.exit(0)\n" + WRONG_FN,
    "os._exit(0) inside the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "SystemExit inside the call": "def add(a, b):\n    raise SystemExit(0)\n",
    "object equal to everything": "class A:\n    def __eq__(self, o):\n        return True\n"
    "    __hash__ = None\ndef add(a, b):\n    return A()\n",
    "str subclass equal to everything": "class S(str):\n    def __eq__(self, o):\n        return True\n"
    "    __hash__ = str.__hash__\ndef add(a, b):\n    return S('x')\n",
    "patches builtins": "import builtins\nbuiltins.AssertionError = type('E', (Exception,), {})\n"
    "builtins.isinstance = lambda *a: True\n" + WRONG_FN,
    "kills its parent": "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a - b\n",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forgeries_do_not_pass(backend, name):
    solution = FORGERIES[name]
    asserts = [{"kind": "assert", "code": CHECK_ADD, "entry_point": "add", "public": True}]
    for tests in ([call("add", [1, 2], 3), call("add", [2, 2], 4, public=False)], asserts):
        result = judge(backend, solution, tests)
        assert result.verdict not in ("pass", "judge_error"), (name, result.feedback.text)
        assert result.reward == 0.0


def test_killing_everything_in_the_sandbox_does_not_pass(backend):
    if backend == "process":
        pytest.skip("the process backend has no pid namespace: this would signal the host")
    # Only processes of the sandbox's own uid: belt and braces on top of the pid namespace.
    solution = (
        "import os, signal\n"
        "def add(a, b):\n"
        "    for pid in sorted((int(p) for p in os.listdir('/proc') if p.isdigit()), reverse=True):\n"
        "        try:\n"
        "            if pid != os.getpid() and os.stat(f'/proc/{pid}').st_uid == os.getuid():\n"
        "                os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return a + b + 1\n"
    )
    result = judge(backend, solution, [call("add", [1, 2], 3)])
    # The harness is out of reach (pid 1 / a non-dumpable supervisor): the wrong answer is still judged.
    assert result.verdict in ("wrong_answer", "runtime_error") and result.reward == 0.0


def test_forged_report_on_the_sandbox_init_stdout_does_not_pass(backend):
    solution = (
        "import os, signal\n"
        "def add(a, b):\n"
        f"    report = {FORGED!r}\n"
        "    for target in ('/proc/1/fd/1', '/dev/stdout'):\n"
        "        try:\n"
        "            fd = os.open(target, os.O_WRONLY)\n"
        "            os.write(fd, report.encode())\n"
        "            os.close(fd)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return a - b\n"
    )
    result = judge(backend, solution, [call("add", [1, 2], 3)])
    assert result.verdict != "pass" and result.reward == 0.0


def test_hidden_expected_outputs_are_unreachable(backend):
    """The solution searches /proc (every process's fds, cmdline, environ), its files and
    its own memory for the hidden expected value; it must find nothing."""
    snoop = (
        "import gc, os, re\n"
        "PATTERN = re.compile(rb'SECRET-[0-9]+')\n"
        "def grab(path):\n"
        "    try:\n"
        "        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)\n"
        "    except OSError:\n"
        "        return None\n"
        "    try:\n"
        "        return PATTERN.search(os.read(fd, 1 << 22))\n"
        "    except OSError:\n"
        "        return None\n"
        "    finally:\n"
        "        os.close(fd)\n"
        "def f(x):\n"
        "    paths = [os.path.join(d, n) for d in ('.', '/tmp') for n in os.listdir(d)]\n"
        "    for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
        "        paths += [f'/proc/{pid}/cmdline', f'/proc/{pid}/environ', f'/proc/{pid}/mem']\n"
        "        try:\n"
        "            paths += [f'/proc/{pid}/fd/{n}' for n in os.listdir(f'/proc/{pid}/fd')]\n"
        "        except OSError:\n"
        "            pass\n"
        "    for path in paths:\n"
        "        found = grab(path)\n"
        "        if found:\n"
        "            return found.group().decode()\n"
        "    for obj in gc.get_objects():\n"
        "        if isinstance(obj, (str, bytes)):\n"
        "            found = PATTERN.search(obj.encode('utf-8', 'replace') if isinstance(obj, str) else obj)\n"
        "            if found:\n"
        "                return found.group().decode()\n"
        "    return 'nothing'\n"
    )
    tests = [call("f", [1], "nothing"), call("f", [2], "SECRET-4711", public=False)]
    result = judge(backend, snoop, tests)
    assert [r.verdict for r in result.results] == ["pass", "wrong_answer"]
    asserts = [
        {"kind": "assert", "code": "def check(c):\n    assert c(1) == 'SECRET-90210'\n", "entry_point": "f"}
    ]
    assert judge(backend, snoop, asserts).verdict == "wrong_answer"


# ------------------------------------------------------------------- judge's own failures
def test_unusable_tests_and_sandboxes_are_judge_errors(backend):
    bad_arg = [
        {"kind": "assert", "code": "def check(c):\n    assert c(lambda: 1) == 1\n", "entry_point": "f"}
    ]
    result = judge(backend, "def f(g):\n    return 1\n", bad_arg)
    assert result.verdict == "judge_error" and result.feedback.is_judge_error
    missing = judge_code(ADD, ADD_TESTS, backend="no-such-backend")
    assert missing.verdict == "judge_error" and "sandbox unavailable" in missing.feedback.details["reason"]


def test_an_unusable_test_does_not_disturb_the_next_ones(backend):
    # Straight to the harness: judge_code stops at the first judge_error.
    tests = parse_tests(
        [
            call("f", [1], 1),
            {"kind": "assert", "code": "def check(c):\n    assert c(lambda: 1) == 1\n", "entry_point": "f"},
            call("f", [2], 2),
            stdio("", ""),
        ]
    )
    sandbox = get_backend(backend)
    build = harness_for(sandbox)
    payload = _payload("def f(g):\n    return g\n", "", tests, FAST, build.site_dirs)
    for _ in range(3):
        result = sandbox.run(
            build.command(sandbox.python),
            files=build.files,
            stdin=payload,
            limits=FAST.for_run(4, len(payload)),
        )
        verdicts = [t["verdict"] for t in json.loads(result.stdout)["tests"]]
        assert verdicts == ["pass", "judge_error", "pass", "pass"]


def _exec(status, exit_code, stdout="", stderr=""):
    return ExecResult(status, exit_code, stdout, stderr, 0.0, 0.0, None, Isolation("test"))


def test_blame_rules_without_a_valid_report():
    assert _no_report_verdict(_exec("sandbox_error", None)) is None
    assert (
        _no_report_verdict(_exec("runtime_error", 1, stderr="Traceback (most recent call last):\n")) is None
    )
    assert _no_report_verdict(_exec("runtime_error", 137))[0] == "runtime_error"
    assert _no_report_verdict(_exec("ok", 0, stdout="garbage"))[0] == "runtime_error"
    assert _no_report_verdict(_exec("time_limit", None))[0] == "time_limit"
    assert _no_report_verdict(_exec("memory_limit", None))[0] == "memory_limit"
    # exactly one report, from a run that exited 0
    report = json.dumps({"version": "sdpo-code-harness/1", "tests": [{"verdict": "pass"}]})
    assert _parse_report(_exec("ok", 0, stdout=report), 1) is not None
    assert _parse_report(_exec("ok", 0, stdout=report + report), 1) is None
    assert _parse_report(_exec("runtime_error", 137, stdout=report), 1) is None
    assert _parse_report(_exec("ok", 0, stdout=report), 2) is None


# ------------------------------------------------------------------------ the harness zip
def _harness_modules():
    """name -> the harness package's modules it imports (relative imports at module level)."""
    found = {}
    for path in Path(harness.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        found[path.stem] = {
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 1
        }
    return found


def test_the_zip_loader_loads_every_module_after_those_it_imports():
    modules = _harness_modules()
    entry = ast.parse((Path(harness.__file__).parent / "__main__.py").read_text())
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in entry.body
        if isinstance(node, ast.Assign) and node.targets[0].id in ("PACKAGE", "MODULES")
    }
    assert constants["PACKAGE"] == PACKAGE
    order = constants["MODULES"]
    assert sorted(order) == sorted(set(modules) - {"__init__", "__main__"})
    assert not modules["__main__"]  # the zip's top-level __main__: no package of its own
    for position, name in enumerate(order):
        assert modules[name] <= set(order[:position]), f"{name} imports a module loaded after it"


def _run_harness(sandbox, build, command, tests, solution):
    parsed = parse_tests(tests)
    payload = _payload(solution, "", parsed, FAST, build.site_dirs)
    result = sandbox.run(
        command, files=build.files, stdin=payload, limits=FAST.for_run(len(parsed), len(payload))
    )
    assert result.exit_code == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["harness_error"] is None, report["harness_error"]
    return [t["verdict"] for t in report["tests"]]


def test_the_harness_runs_from_its_zip_as_a_script_and_from_source(backend):
    sandbox = get_backend(backend)
    build = harness_for(sandbox)
    assert build.compiled and set(build.files) == {ARCHIVE}
    tests = [call("f", [1], 2), stdio("3\n", "4\n")]
    solution = "def f(x):\n    return x + 1\n\nif __name__ == '__main__':\n    print(f(int(input())))\n"
    sources = {name: source.encode() for name, source in harness_sources().items()}
    from_source = HarnessBuild(files={ARCHIVE: harness_zip(sources)}, site_dirs=build.site_dirs)
    for runs, command in [
        (build, build.command(sandbox.python)),
        (build, [sandbox.python, "-S", ARCHIVE]),  # as `python3 harness.zip`, through runpy
        (from_source, from_source.command(sandbox.python)),  # what is shipped when the probe fails
    ]:
        assert _run_harness(sandbox, runs, command, tests, solution) == ["pass", "pass"]


def test_test_code_cannot_import_what_the_solution_wrote_next_to_the_harness(backend):
    # The first test plants a module in the scratch dir (the harness zip's dir); the second's
    # trusted check code imports it lazily, in the harness's process: it must not be found.
    plant = "def f():\n    open('planted.py', 'w').write('VALUE = 1\\n')\n    return 1\n"
    check = "def check(c):\n    import planted\n    assert c() == planted.VALUE\n"
    result = judge(backend, plant, [call("f", [], 1), {"kind": "assert", "code": check, "entry_point": "f"}])
    assert [r.verdict for r in result.results] == ["pass", "wrong_answer"]
    assert result.results[1].info.get("test_error") == "ModuleNotFoundError"
