"""The code judge: find the program in an answer, run it against test cases in a sandbox,
turn the harness's report into a verdict and online-judge style feedback.

``extract`` finds the program; ``cases`` parses test cases; ``judge`` runs the harness
(``harness``, shipped by ``build``) through a sandbox backend; ``results`` holds what it
decides (and under which limits); ``feedback`` writes the text.
"""

from .cases import TEST_KINDS, CodeTest, parse_test, parse_tests
from .extract import Extraction, extract_code
from .feedback import FeedbackPolicy
from .judge import REWARD_MODES, judge_code
from .results import CaseResult, CodeJudgement, CodeLimits

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
