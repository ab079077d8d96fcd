"""Hostile model outputs per environment: each gets reward 0 and a verdict that is the model's
failure (never ``judge_error``), with bounded feedback. The code suite runs on every sandbox
backend that can start here (bubblewrap; Docker where an engine runs, as in CI)."""

from __future__ import annotations

import json

import pytest

from sdpo_envs.judges import CodeLimits, judge_code
from sdpo_envs.judges.harness import outputs_match, values_equal
from sdpo_envs.sandbox import SandboxUnavailable, get_backend

FAST = CodeLimits(time_s=1.0, wall_s=3.0, memory_mb=256)


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def backend(request):
    try:
        get_backend(request.param)
    except (SandboxUnavailable, ValueError) as exc:
        pytest.skip(f"{request.param} sandbox unavailable here: {exc}")
    return request.param


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
