"""Test cases of the code judge, parsed and validated from plain dicts.

Three kinds (``public`` defaults to ``False``: a test is hidden unless marked public):

* ``{"kind": "stdio", "input": str, "output": str}`` -- run the program as ``__main__`` with
  ``input`` on stdin; its stdout must match ``output`` (see ``harness.outputs_match``:
  line by line, whitespace-insensitive, 1e-6 tolerance on non-integer numbers).
* ``{"kind": "call", "fn": str, "args": list, "kwargs"?: dict, "expected": any}`` -- call
  ``fn(*args, **kwargs)`` (a top-level function, ``Solution().fn`` for LeetCode-style
  classes, or a dotted path); the result, parsed as a plain literal, must equal ``expected``
  (tuples compare as lists, floats within 1e-6 absolute-or-relative error).
* ``{"kind": "assert", "code": str, "entry_point": str}`` -- trusted test code (e.g.
  HumanEval's ``def check(candidate): assert ...``, or module-level asserts naming
  ``entry_point``) run by the judge with ``candidate`` standing for the solution's function.
  Arguments and results cross to the solution as plain literals, so the asserts themselves
  run outside the untrusted process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

TestKind = Literal["stdio", "call", "assert"]
TEST_KINDS: tuple[str, ...] = ("stdio", "call", "assert")


@dataclass(frozen=True)
class CodeTest:
    """One test case; build with :func:`parse_test` to get validation."""

    kind: TestKind
    public: bool = False
    input: str = ""
    output: str = ""
    fn: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None
    code: str = ""
    entry_point: str = ""

    @property
    def size(self) -> int:
        """How big the case looks to a reader: failing cases are shown smallest first."""
        if self.kind == "stdio":
            return len(self.input)
        if self.kind == "call":
            return len(self.call_text())
        return len(self.code)

    def call_text(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.fn}({', '.join(parts)})"

    def to_spec(self) -> dict[str, Any]:
        """What the in-sandbox harness receives."""
        if self.kind == "stdio":
            return {"kind": "stdio", "input": self.input, "output": self.output}
        if self.kind == "call":
            return {
                "kind": "call",
                "fn": self.fn,
                "args": list(self.args),
                "kwargs": dict(self.kwargs),
                "expected": self.expected,
            }
        return {"kind": "assert", "code": self.code, "entry_point": self.entry_point}


def _need_str(test: Mapping[str, Any], key: str, where: str, *, nonempty: bool = False) -> str:
    if key not in test:
        raise ValueError(f"{where}.{key}: missing (required for kind {test['kind']!r})")
    value = test[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise ValueError(f"{where}.{key}: must not be empty")
    return value


def _need_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not JSON-serialisable plain data ({exc})") from None


def parse_test(test: Any, where: str = "test") -> CodeTest:
    """Validate one test dict; ``ValueError`` names the offending field (``where.field``)."""
    if isinstance(test, CodeTest):
        return test
    if not isinstance(test, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(test).__name__}")
    kind = test.get("kind")
    if kind not in TEST_KINDS:
        raise ValueError(f"{where}.kind: must be one of {', '.join(TEST_KINDS)}, got {kind!r}")
    public = test.get("public", False)
    if not isinstance(public, bool):
        raise ValueError(f"{where}.public: expected true or false, got {public!r}")
    if kind == "stdio":
        return CodeTest(
            "stdio", public, input=_need_str(test, "input", where), output=_need_str(test, "output", where)
        )
    if kind == "call":
        fn = _need_str(test, "fn", where, nonempty=True)
        args = test.get("args", [])
        if not isinstance(args, Sequence) or isinstance(args, (str, bytes)):
            raise ValueError(f"{where}.args: expected a list of arguments, got {type(args).__name__}")
        kwargs = test.get("kwargs") or {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ValueError(f"{where}.kwargs: expected a dict with string keys")
        if "expected" not in test:
            raise ValueError(f"{where}.expected: missing (required for kind 'call')")
        _need_json(list(args), f"{where}.args")
        _need_json(dict(kwargs), f"{where}.kwargs")
        _need_json(test["expected"], f"{where}.expected")
        return CodeTest(
            "call", public, fn=fn, args=tuple(args), kwargs=dict(kwargs), expected=test["expected"]
        )
    code = _need_str(test, "code", where, nonempty=True)
    try:
        compile(code, "<test>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ValueError(f"{where}.code: does not compile ({exc.msg}, line {exc.lineno})") from None
    return CodeTest(
        "assert", public, code=code, entry_point=_need_str(test, "entry_point", where, nonempty=True)
    )


def parse_tests(tests: Any, where: str = "tests") -> list[CodeTest]:
    """Validate a list of test dicts (at least one)."""
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence):
        raise ValueError(f"{where}: expected a list of tests, got {type(tests).__name__}")
    if not tests:
        raise ValueError(f"{where}: at least one test is required")
    return [parse_test(test, f"{where}[{i}]") for i, test in enumerate(tests)]
