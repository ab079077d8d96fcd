"""The math checker: ``math-verify`` in a supervised pool of killable worker processes
(``pool``; each worker runs ``worker.py`` as a script, by path)."""

from .pool import HOOK_PREFIX, CheckResult, MathVerifyPool, shared_math_pool

__all__ = ["HOOK_PREFIX", "CheckResult", "MathVerifyPool", "shared_math_pool"]
