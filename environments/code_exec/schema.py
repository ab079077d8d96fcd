"""Task rows of ``sdpo/CodeExec-v0``.

A row is a dict::

    {
      "task_id": "HumanEval/0",           # optional; the env falls back to "<set>/<index>"
      "prompt": "Problem statement ...",    # required: shown to the model
      "tests": [                            # required, at least one; "public" defaults to false
        {"kind": "stdio", "input": "1 2\\n", "output": "3\\n", "public": true},
        {"kind": "call", "fn": "add", "args": [1, 2], "kwargs": {}, "expected": 3, "public": false},
        {"kind": "assert", "code": "def check(candidate): ...", "entry_point": "add", "public": true}
      ],
      "starter_code": "def add(a, b):\\n",  # optional: shown in a ```python block
      "append_to_starter": false,           # optional: judge starter_code + the answer (HumanEval)
      "entry_point": "add",                 # required with append_to_starter: the function to complete
      "prelude": "from typing import *\\n"  # optional trusted code run before the solution
    }

Test kinds and how they compare are documented in ``sdpo_envs.judges.code.cases``. Extra
keys are kept and ignored (``canonical_solution``, ``difficulty``, ...). Raw HumanEval rows
(``prompt``/``test``/``entry_point``/``canonical_solution``) and raw LiveCodeBench
``code_generation_lite`` rows are recognised and converted (see ``data.py``).

With ``append_to_starter`` the judged program is ``starter_code`` followed by the answer:
an answer that defines ``entry_point`` at top level replaces the stub (the starter's imports
and helpers stay available); any other answer is taken as the function's body and indented
under the starter's signature.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

from sdpo_envs.judges import parse_tests

from .tasks import humaneval_row, is_humaneval_row, is_lcb_row, lcb_row

Row = dict[str, Any]
FENCE_INSTRUCTION = "Answer with your code in a single ```python code block."


def normalize_row(row: Mapping[str, Any]) -> Row:
    """Validate a row (converting raw HumanEval / LiveCodeBench rows); ``ValueError`` names
    the task and the field."""
    if is_humaneval_row(row):
        row = humaneval_row(row)
    elif is_lcb_row(row):
        row = lcb_row(row)
    row = dict(row)
    name = f"task {row.get('task_id', row.get('id', '?'))!r}"
    if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
        raise ValueError(f"{name}: field 'prompt' must be a non-empty string")
    if "tests" not in row:
        raise ValueError(f"{name}: field 'tests' is missing")
    try:
        parse_tests(row["tests"])
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    for key in ("starter_code", "prelude", "entry_point"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ValueError(f"{name}: field {key!r} must be a string")
    if not isinstance(row.get("append_to_starter", False), bool):
        raise ValueError(f"{name}: field 'append_to_starter' must be true or false")
    if row.get("append_to_starter") and not (row.get("starter_code") and row.get("entry_point")):
        raise ValueError(f"{name}: 'append_to_starter' needs 'starter_code' and 'entry_point'")
    return row


def assemble_program(row: Mapping[str, Any], code: str) -> str:
    """The program to judge for the model's ``code`` (see the module docstring)."""
    if not row.get("append_to_starter"):
        return code
    starter = str(row["starter_code"]).rstrip("\n") + "\n"
    entry = re.escape(str(row["entry_point"]))
    if re.search(rf"^(async\s+)?def\s+{entry}\s*\(", code, re.MULTILINE):
        return f"{starter}\n\n{code}"
    body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")
    return f"{starter}{body}\n"


def _kinds(row: Mapping[str, Any]) -> set[str]:
    return {t["kind"] for t in row["tests"]}


def instruction(row: Mapping[str, Any]) -> str:
    """How to answer, from what the tests will do with the program."""
    if row.get("append_to_starter"):
        return (
            f"Complete the function `{row['entry_point']}`. Answer with the complete function "
            f"(you may add imports and helper functions) in a single ```python code block."
        )
    kinds = _kinds(row)
    if kinds == {"stdio"}:
        return (
            "Write a complete Python 3 program that reads the input from standard input and "
            f"writes the answer to standard output. {FENCE_INSTRUCTION}"
        )
    names = sorted({t.get("fn") or t.get("entry_point") for t in row["tests"] if t["kind"] != "stdio"})
    target = ", ".join(f"`{n}`" for n in names)
    starter = " Keep the signature of the starter code." if row.get("starter_code") else ""
    return f"Implement {target} in Python 3.{starter} {FENCE_INSTRUCTION}"


def build_prompt(row: Mapping[str, Any]) -> str:
    parts = [str(row["prompt"]).strip()]
    if row.get("starter_code"):
        parts.append(f"```python\n{str(row['starter_code']).rstrip()}\n```")
    parts.append(instruction(row))
    return "\n\n".join(parts)
