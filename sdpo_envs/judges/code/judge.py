"""Judge a Python solution against test cases in a sandbox.

``judge_code`` starts the trusted harness (``harness``) once per solution through any
sandbox backend, with all tests in one invocation and per-test limits enforced inside, and
turns its report into a :class:`CodeJudgement` with online-judge style feedback.

Who is blamed when there is no valid report: a ``sandbox_error`` or a harness crash (a
Python traceback) is ``judge_error``; a run that hit the sandbox's tree limits, killed the
harness, or wrote into its report channel is the solution's failure. A run spoiled from
outside (the sandbox's ``rerun``, or a test the harness found starved of CPU by other
programs) is run again, up to ``RUN_ATTEMPTS`` times, and never scored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import struct
from collections.abc import Sequence
from typing import Any, Literal, cast

from ...feedback import Feedback, Verdict
from ...sandbox import ExecResult, SandboxBackend, SandboxUnavailable, get_backend
from .build import harness_for
from .cases import CodeTest, parse_tests
from .feedback import FeedbackPolicy, render_feedback
from .harness import PRELOADABLE, REPORT_VERSION, STARVED, worker_request
from .results import CaseResult, CodeJudgement, CodeLimits

logger = logging.getLogger(__name__)

RewardMode = Literal["binary", "fraction"]
# Runs of one solution before a run spoiled from outside (``ExecResult.rerun``, a starved
# test) is reported as the judge's failure rather than scored.
RUN_ATTEMPTS = 3
REWARD_MODES = ("binary", "fraction")
SOLUTION_FILENAME = "solution.py"
_TEST_VERDICTS = (
    "pass",
    "wrong_answer",
    "runtime_error",
    "time_limit",
    "memory_limit",
    "judge_error",
    "skipped",
)
# PYTHONHASHSEED fixes set/dict-of-str iteration order, so the same solution prints the same output.
SANDBOX_ENV = {
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}

_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w., \t]+))", re.MULTILINE)


def preload_modules(*sources: str) -> list[str]:
    """The preloadable stdlib modules that ``sources`` import (a cheap textual scan)."""
    found = set()
    for source in sources:
        for frm, names in _IMPORT.findall(source):
            for name in [frm] if frm else names.split(","):
                root = name.strip().split(" ")[0].split(".")[0]
                if root in PRELOADABLE:
                    found.add(root)
    return sorted(found)


def _payload(
    solution: str,
    prelude: str,
    tests: Sequence[CodeTest],
    limits: CodeLimits,
    site_dirs: Sequence[str] = (),
    strict_types: bool = False,
) -> bytes:
    specs = [t.to_spec() for t in tests]
    if strict_types:
        for spec in specs:
            if spec["kind"] == "call":
                spec["strict"] = True
    public: dict[str, Any] = {
        "solution": solution,
        "prelude": prelude,
        "filename": SOLUTION_FILENAME,
        "site_dirs": list(site_dirs),
        "preload": preload_modules(solution, prelude, *(t.code for t in tests if t.kind == "assert")),
        "limits": limits.per_test(),
        # how each test's worker must be started (mode, function): no test data
        "workers": [[r["mode"], r["fn"]] for r in (worker_request(s, None) for s in specs)],
    }
    head, tail = json.dumps(public).encode(), json.dumps({"tests": specs}).encode()
    return struct.pack(">Q", len(head)) + head + tail


def _parse_report(result: ExecResult, n_tests: int) -> dict[str, Any] | None:
    """The harness's report, or ``None`` when the run did not produce exactly one valid one."""
    # Only the harness exits 0 after writing; the sandbox's own verdict on the tree (say a
    # CPU total over budget) does not invalidate a report the harness finished.
    if result.exit_code != 0 or result.status == "sandbox_error":
        return None
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return None
    if not isinstance(report, dict) or report.get("version") != REPORT_VERSION:
        return None
    tests = report.get("tests")
    if report.get("harness_error") or report.get("compile_error"):
        return report
    if not isinstance(tests, list) or len(tests) != n_tests or not all(isinstance(t, dict) for t in tests):
        return None
    return report


def _no_report_verdict(result: ExecResult) -> tuple[Verdict, str] | None:
    """Whom to blame for a run without a valid report; ``None`` means the judge (judge_error)."""
    if result.status == "sandbox_error":
        return None
    if result.status == "time_limit":
        return "time_limit", "the run exceeded the judge's overall time limit (the judge process was stalled)"
    if result.status == "memory_limit":
        return "memory_limit", "the run exceeded the sandbox's memory limit"
    if result.status == "output_limit":
        return "runtime_error", "the program wrote into the judge's report channel (output limit exceeded)"
    if result.exit_code == 0:
        return "runtime_error", "the program tampered with the judge's report channel"
    if "Traceback (most recent call last)" in result.stderr or result.exit_code in (1, 70):
        return None  # the harness itself crashed
    return "runtime_error", "the program killed the judge process"


def _reward(passed: int, total: int, mode: RewardMode) -> float:
    if mode == "fraction":
        return passed / total if total else 0.0
    return 1.0 if total and passed == total else 0.0


def _judge_error(reason: str, isolation: str = "", **details: Any) -> CodeJudgement:
    feedback = Feedback.judge_error(reason, isolation=isolation, **details)
    return CodeJudgement("judge_error", 0.0, 0, 0, feedback, isolation=isolation)


def _results(tests: Sequence[CodeTest], records: Sequence[dict[str, Any]]) -> tuple[CaseResult, ...]:
    out = []
    for index, (test, record) in enumerate(zip(tests, records)):
        verdict = record.get("verdict")
        if verdict not in _TEST_VERDICTS:
            verdict = "judge_error"
        out.append(
            CaseResult(
                index=index,
                test=test,
                verdict=verdict,
                cpu_s=float(record.get("cpu_s") or 0.0),
                wall_s=float(record.get("wall_s") or 0.0),
                info=record,
            )
        )
    return tuple(out)


def judge_code(
    solution: str,
    tests: Sequence[CodeTest | dict[str, Any]],
    *,
    prelude: str = "",
    backend: str | SandboxBackend = "auto",
    limits: CodeLimits | None = None,
    policy: FeedbackPolicy | None = None,
    reward: RewardMode = "binary",
    allow_unsafe: bool = False,
    strict_types: bool = False,
) -> CodeJudgement:
    """Run ``solution`` against ``tests`` in the sandbox and judge it.

    ``prelude`` is trusted code run in the solution's namespace first (e.g. the imports a
    dataset assumes). ``reward``: ``"binary"`` (1 if every test passes, else 0) or
    ``"fraction"`` (the share of all tests, public and hidden, that pass). ``strict_types``: a
    call test's result must also have the expected scalar types (``1`` is not ``True``). Never
    raises for anything the solution does; a broken sandbox gives a ``judge_error`` judgement.
    """
    if reward not in REWARD_MODES:
        raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
    parsed = parse_tests(list(tests))
    limits = limits or CodeLimits()
    try:
        sandbox = get_backend(backend, allow_unsafe=allow_unsafe)
    except (SandboxUnavailable, ValueError) as exc:
        return _judge_error(f"sandbox unavailable: {exc}")
    try:
        build = harness_for(sandbox)
        payload = _payload(solution, prelude, parsed, limits, build.site_dirs, strict_types)
        for attempt in range(1, RUN_ATTEMPTS + 1):
            result = sandbox.run(
                build.command(sandbox.python),
                files=build.files,
                stdin=payload,
                limits=limits.for_run(len(parsed), len(payload)),
                env=SANDBOX_ENV,
            )
            # A run that a neighbour or the host spoiled says nothing about the solution.
            if not _needs_rerun(result, len(parsed)):
                break
            logger.warning(
                "code judge: run %d of %d spoiled from outside (%s)", attempt, RUN_ATTEMPTS, result.detail
            )
    except Exception as exc:  # a backend must not raise, but a judge must not crash either
        name = getattr(sandbox, "name", "?")
        return _judge_error(f"sandbox backend {name} raised {type(exc).__name__}: {exc}")
    if _needs_rerun(result, len(parsed)):
        why = result.detail or "a test was starved of CPU by other programs on the machine"
        return _judge_error(
            f"infrastructure: every one of {RUN_ATTEMPTS} runs was spoiled from outside the sandbox ({why})",
            str(result.isolation),
        )
    judgement = _interpret(result, parsed, limits, policy or FeedbackPolicy(), reward)
    return dataclasses.replace(judgement, run_cpu_s=result.cpu_s, run_wall_s=result.wall_s)


def _needs_rerun(result: ExecResult, n_tests: int) -> bool:
    """The sandbox says the run was spoiled from outside, or the harness that a test was
    starved of CPU by its neighbours until its wall clock ran out (``STARVED``)."""
    if result.rerun:
        return True
    report = _parse_report(result, n_tests)
    return bool(report and any(t.get("verdict") == STARVED for t in report.get("tests") or ()))


def _interpret(
    result: ExecResult, tests: list[CodeTest], limits: CodeLimits, policy: FeedbackPolicy, reward: RewardMode
) -> CodeJudgement:
    """The judgement of one harness run: from its report, or from how the run failed."""
    isolation = str(result.isolation)
    report = _parse_report(result, len(tests))
    if report is None:
        blame = _no_report_verdict(result)
        if blame is None:
            why = result.detail or f"exit code {result.exit_code}"
            return _judge_error(
                f"code harness failed: {result.status} ({why})", isolation, stderr=result.stderr[-2000:]
            )
        verdict, why = blame
        feedback = render_feedback(verdict, tests, (), policy, limits, run_failure=why, isolation=isolation)
        return CodeJudgement(verdict, 0.0, 0, len(tests), feedback, isolation=isolation)
    if report.get("harness_error"):
        return _judge_error("code harness error", isolation, harness_error=report["harness_error"][-2000:])
    notes = [str(n) for n in report.get("notes") or []]
    if report.get("compile_error"):
        error = report["compile_error"]
        feedback = render_feedback(
            "compile_error", tests, (), policy, limits, compile_error=error, isolation=isolation, notes=notes
        )
        return CodeJudgement(
            "compile_error", 0.0, 0, len(tests), feedback, isolation=isolation, compile_error=error
        )
    results = _results(tests, report["tests"])
    broken = [r for r in results if r.verdict == "judge_error"]
    if broken:
        return _judge_error(f"a test could not be run: {broken[0].info.get('detail')}", isolation)
    failures = [r for r in results if not r.passed]
    passed = len(results) - len(failures)
    verdict = cast(Verdict, failures[0].verdict) if failures else "pass"
    feedback = render_feedback(verdict, tests, results, policy, limits, isolation=isolation, notes=notes)
    return CodeJudgement(
        verdict, _reward(passed, len(results), reward), passed, len(results), feedback, results, isolation
    )
