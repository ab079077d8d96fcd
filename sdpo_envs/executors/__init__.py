"""Where environment steps and judge calls run: ``LocalExecutor`` (this host's thread pool)
or ``RayExecutor`` (a warm actor per node of a Ray cluster), behind ``Executor``."""

from .base import Executor
from .factory import JUDGE_BACKENDS, check_judge_backend, executor_for, make_executor
from .local import LocalExecutor, default_workers
from .outcome import Outcome
from .ray import RayExecutor
from .ray_runtime import RAY_EXTRA, RayConnectionError, RayUnavailable
from .steps import StepResult

__all__ = [
    "JUDGE_BACKENDS",
    "RAY_EXTRA",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "RayConnectionError",
    "RayExecutor",
    "RayUnavailable",
    "StepResult",
    "check_judge_backend",
    "default_workers",
    "executor_for",
    "make_executor",
]
