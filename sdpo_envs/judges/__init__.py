"""Judges: turn a model's answer into a verdict and rich feedback.

Code: :func:`extract_code` finds the program in an answer; :func:`judge_code` runs it
against :class:`CodeTest` cases in a sandbox and returns a :class:`CodeJudgement`.
"""

from .code import REWARD_MODES, CaseResult, CodeJudgement, CodeLimits, judge_code
from .code_feedback import FeedbackPolicy
from .code_tests import TEST_KINDS, CodeTest, parse_test, parse_tests
from .extract import Extraction, extract_code

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
