"""Judges: turn a model's answer into a verdict and rich feedback.

Code: :func:`extract_code` finds the program in an answer; :func:`judge_code` runs it
against :class:`CodeTest` cases in a sandbox and returns a :class:`CodeJudgement`
(``judges.code``). Math: ``judges.math`` checks answers with ``math-verify`` in a pool of
killable worker processes.
"""

from .code.cases import TEST_KINDS, CodeTest, parse_test, parse_tests
from .code.extract import Extraction, extract_code
from .code.feedback import FeedbackPolicy
from .code.judge import REWARD_MODES, judge_code
from .code.results import CaseResult, CodeJudgement, CodeLimits

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
