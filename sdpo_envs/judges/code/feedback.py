"""Online-judge style feedback text for the code judge.

Layout: a verdict line ("Wrong answer on test 3 of 10."), a count line, then the details of
the first failure's kind, for up to ``max_failing_shown`` *public* failing tests of that kind,
smallest input first: the input, the expected and the actual output (wrong answer); the
exception, its message and the line of the solution (runtime error); the limit that was hit.

Hidden tests never leak: their inputs, expected outputs, actual outputs and exception
messages (which often quote the input) are never in the text, only counts and, for a
runtime error, the exception type and the solution's line. ``details`` carries per-test
records; for hidden tests only the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...feedback import DEFAULT_MAX_FEEDBACK_CHARS, Feedback, Verdict, bound_text
from .cases import CodeTest
from .results import CaseResult, CodeLimits

FIELD_CHARS = 400  # one input / output shown in the text
DETAIL_CHARS = 1000  # one field kept in details

_HEADLINES = {
    "wrong_answer": "Wrong answer",
    "runtime_error": "Runtime error",
    "time_limit": "Time limit exceeded",
    "memory_limit": "Memory limit exceeded",
}


@dataclass(frozen=True)
class FeedbackPolicy:
    """What the feedback may reveal.

    ``show_public_tests``: show input / expected / actual of failing public tests.
    ``show_expected``: include the expected output (turn off to only show the input).
    ``reveal_hidden_counts``: say how many hidden tests exist and failed (never their data).
    ``max_failing_shown``: how many failing public cases to show.
    """

    show_public_tests: bool = True
    show_expected: bool = True
    reveal_hidden_counts: bool = True
    max_failing_shown: int = 3
    max_chars: int = DEFAULT_MAX_FEEDBACK_CHARS

    def __post_init__(self) -> None:
        if self.max_failing_shown < 0:
            raise ValueError(f"max_failing_shown must be >= 0, got {self.max_failing_shown}")
        if self.max_chars < 64:
            raise ValueError(f"max_chars must be >= 64, got {self.max_chars}")


def _clip(text: str, limit: int = FIELD_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def _block(label: str, text: str) -> str:
    body = _clip(text.rstrip("\n")) if text.strip() else "(empty)"
    return f"{label}:\n{body}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counts(results: Sequence[CaseResult], policy: FeedbackPolicy) -> str:
    public = [r for r in results if r.test.public]
    failed_public = sum(not r.passed for r in public)
    if not policy.reveal_hidden_counts:
        return f"{failed_public} of {_plural(len(public), 'public test')} failed." if public else ""
    failed_hidden = sum(not r.passed for r in results if not r.test.public)
    line = f"Passed {sum(r.passed for r in results)} of {_plural(len(results), 'test')}"
    parts = [
        _plural(n, noun) for n, noun in ((failed_public, "public test"), (failed_hidden, "hidden test")) if n
    ]
    if parts:
        line += f"; failed: {', '.join(parts)}"
    skipped = sum(r.verdict == "skipped" for r in results)
    if skipped:
        line += f" ({skipped} not run after the time limit was exceeded)"
    return line + "."


def _error_lines(info: dict[str, Any], *, hidden: bool) -> list[str]:
    error = info.get("error") or {}
    lines = []
    if error:
        kind = str(error.get("type", "Exception"))
        message = "" if hidden else str(error.get("msg") or "")
        lines.append(f"{kind}: {_clip(message, 300)}" if message else kind)
        if error.get("line"):
            where = f"  at line {error['line']} of your solution"
            if error.get("func") and error["func"] != "<module>":
                where += f", in {error['func']}"
            if error.get("source"):
                where += f": {error['source']}"
            lines.append(where)
    detail = info.get("detail")
    if detail == "exit_code":
        lines.append(f"The program exited with code {info.get('exit_code')}.")
    elif detail == "signal":
        name = info.get("signal", "a signal")
        hint = " (often a stack overflow from very deep recursion)" if name == "SIGSEGV" else ""
        lines.append(f"The program was killed by {name}{hint}.")
    elif detail == "output_limit":
        lines.append("Output limit exceeded: the program wrote too much output.")
    elif detail == "judge_killed":
        lines.append("The program killed or stopped the judge's test process.")
    elif detail == "no_result":
        lines.append("The program exited before returning a result.")
    if not hidden and info.get("stderr") and not error:
        lines.append(_block("Standard error", str(info["stderr"])))
    return lines


def _limit_line(verdict: str, info: dict[str, Any], limits: CodeLimits) -> str:
    if verdict == "time_limit":
        if info.get("detail") == "wall":
            return (
                f"The program did not finish within {limits.test_wall_s:g} s of wall-clock time "
                "(is it waiting for input, or sleeping?)."
            )
        return f"The program used more than {limits.time_s:g} s of CPU time."
    return f"The program needed more than {limits.memory_mb} MB of memory."


def _case_lines(result: CaseResult, policy: FeedbackPolicy) -> list[str]:
    """Input / expected / actual of a public test."""
    test, info = result.test, result.info
    if test.kind == "stdio":
        lines = [_block("Input", test.input)]
        if result.verdict == "wrong_answer":
            if policy.show_expected:
                lines.append(_block("Expected output", test.output))
            lines.append(_block("Your output", str(info.get("actual", ""))))
        return lines
    if test.kind == "call":
        lines = [f"Call: {_clip(test.call_text())}"]
        if result.verdict == "wrong_answer":
            if policy.show_expected:
                lines.append(f"Expected: {_clip(repr(test.expected))}")
            lines.append(f"Got: {_clip(str(info.get('actual', '')))}")
            if info.get("detail") == "not_plain":
                lines.append(
                    f"(the function returned a {info.get('actual_type', 'non-literal')} object; only plain data "
                    "such as numbers, strings, lists, tuples, dicts, sets and None can be checked)"
                )
        return lines
    return _assert_lines(result, policy)


def _assert_lines(result: CaseResult, policy: FeedbackPolicy) -> list[str]:
    test, info = result.test, result.info
    lines = []
    line_no = info.get("assert_line")
    code_lines = test.code.splitlines()
    if line_no and 0 < line_no <= len(code_lines) and policy.show_expected:
        lines.append(f"Failed check:\n    {_clip(code_lines[line_no - 1].strip())}")
    if info.get("test_error"):
        lines.append(f"The check raised {info['test_error']}: {_clip(str(info.get('msg', '')), 200)}")
    if info.get("call") is not None:
        call = f"{test.entry_point}({_clip(str(info['call']))})"
        if info.get("actual") is not None and result.verdict == "wrong_answer":
            lines.append(f"Your function was called as {call} and returned {_clip(str(info['actual']))}.")
        else:
            lines.append(f"Last call: {call}")
    return lines


def _failure_section(
    verdict: Verdict, results: Sequence[CaseResult], policy: FeedbackPolicy, limits: CodeLimits
) -> list[str]:
    first = next(r for r in results if not r.passed)
    shown = [r for r in results if r.verdict == verdict and r.test.public] if policy.show_public_tests else []
    shown = sorted(shown, key=lambda r: (r.test.size, r.index))[: policy.max_failing_shown]
    lines: list[str] = []
    if verdict in ("time_limit", "memory_limit"):
        lines.append(_limit_line(verdict, first.info, limits))
    if not first.test.public:
        lines.append("The failing test is hidden; its data is not shown.")
        lines.extend(_error_lines(first.info, hidden=True))
    for result in shown:
        lines.append("")
        lines.append(f"Test {result.index + 1} (public):")
        lines.extend(_error_lines(result.info, hidden=False))
        lines.extend(_case_lines(result, policy))
    return lines


def _headline(verdict: Verdict, results: Sequence[CaseResult], policy: FeedbackPolicy) -> str:
    first = next(r for r in results if not r.passed)
    if policy.reveal_hidden_counts:
        return f"{_HEADLINES[verdict]} on test {first.index + 1} of {len(results)}."
    if not first.test.public:
        return f"{_HEADLINES[verdict]} on a hidden test."
    number = sum(r.test.public for r in results[: first.index + 1])
    return f"{_HEADLINES[verdict]} on public test {number}."


def _compile_lines(error: dict[str, Any]) -> list[str]:
    where = f" (line {error['line']} of your solution)" if error.get("line") else ""
    lines = [f"{error.get('type', 'SyntaxError')}: {error.get('msg', '')}{where}"]
    text = str(error.get("text") or "")
    if text.strip():
        indent = len(text) - len(text.lstrip())
        lines.append("    " + text.strip())
        offset = error.get("offset")
        if isinstance(offset, int) and offset > indent:
            lines.append("    " + " " * (offset - 1 - indent) + "^")
    return lines


def _detail_record(result: CaseResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "index": result.index,
        "public": result.test.public,
        "kind": result.test.kind,
        "verdict": result.verdict,
    }
    if not result.test.public:
        return record
    record.update(cpu_s=result.cpu_s, wall_s=result.wall_s)
    for key in ("actual", "error", "detail", "exit_code", "signal", "assert_line", "call", "stderr"):
        if key in result.info:
            value = result.info[key]
            record[key] = _clip(value, DETAIL_CHARS) if isinstance(value, str) else value
    return record


def render_feedback(
    verdict: Verdict,
    tests: Sequence[CodeTest],
    results: Sequence[CaseResult],
    policy: FeedbackPolicy,
    limits: CodeLimits,
    *,
    compile_error: dict[str, Any] | None = None,
    run_failure: str | None = None,
    isolation: str = "",
    notes: Sequence[str] = (),
) -> Feedback:
    """The model-facing text and structured details of a judgement."""
    total = len(tests)
    details: dict[str, Any] = {
        "tests": [_detail_record(r) for r in results],
        "passed": sum(r.passed for r in results),
        "total": total,
        "public_total": sum(t.public for t in tests),
        "isolation": isolation,
    }
    if notes:
        details["notes"] = list(notes)
    if compile_error is not None:
        details["compile_error"] = compile_error
        text = "\n".join(["Compilation error: the program does not compile.", *_compile_lines(compile_error)])
    elif run_failure is not None:
        details["run_failure"] = run_failure
        text = f"{_HEADLINES.get(verdict, 'Runtime error')}: {run_failure}."
    elif verdict == "pass":
        text = "Accepted: the test passed." if total == 1 else f"Accepted: all {total} tests passed."
    else:
        lines = [_headline(verdict, results, policy)]
        counts = _counts(results, policy)
        if counts:
            lines.append(counts)
        lines.extend(_failure_section(verdict, results, policy, limits))
        text = "\n".join(lines)
    text = bound_text(text, policy.max_chars)
    return Feedback(text=text, verdict=verdict, success=verdict == "pass", details=details)
