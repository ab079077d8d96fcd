"""Judges: turn a model's answer into a verdict and rich feedback.

Code: :func:`extract_code` finds the program in an answer; :func:`judge_code` runs it
against :class:`CodeTest` cases in a sandbox and returns a :class:`CodeJudgement`
(``judges.code``). Math: ``judges.math`` checks answers with ``math-verify`` in a pool of
killable worker processes.
"""

from .code import (
    REWARD_MODES,
    TEST_KINDS,
    CaseResult,
    CodeJudgement,
    CodeLimits,
    CodeTest,
    Extraction,
    FeedbackPolicy,
    extract_code,
    judge_code,
    parse_test,
    parse_tests,
)

__all__ = [
    "REWARD_MODES",
    "TEST_KINDS",
    "CaseResult",
    "CodeJudgement",
    "CodeLimits",
    "CodeTest",
    "Extraction",
    "FeedbackPolicy",
    "extract_code",
    "judge_code",
    "parse_test",
    "parse_tests",
]
