"""``CodeExecEnv``: write a Python program; it is run against tests in a sandbox.

The row schema is in ``environments.code_exec.schema``; the judging (sandbox, verdicts,
feedback) in ``sdpo_envs.judges``. The answer's code is its last complete ```python block
(``sdpo_envs.judges.code.extract``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from sdpo_envs import Feedback, Messages, TextEnv
from sdpo_envs.judges import CodeLimits, FeedbackPolicy, extract_code, judge_code
from sdpo_envs.sandbox import SandboxBackend

from .schema import Row, assemble_program, build_prompt, normalize_row
from .tasks import humaneval_tasks, lcb_sample_tasks, lcb_tasks


class CodeExecEnv(TextEnv):
    """Python programming tasks judged by running the answer against tests.

    ``dataset``: ``"humaneval"`` (default, 164 offline problems), ``"humaneval:hidden"``,
    ``"lcb-sample"``, ``"lcb:<path.jsonl>"``, a JSONL path, a ``datasets.Dataset`` or a list
    of rows. ``backend`` (alias ``sandbox``): ``"auto"``, ``"bwrap"``, ``"docker"``,
    ``"process"`` (needs ``allow_unsafe=True``) or a backend instance. ``time_limit_s`` (CPU
    per test) and ``memory_mb`` (per test), or ``limits=CodeLimits(...)`` for all of them.
    ``reward``: ``"binary"`` (default: 1 only if every test passes) or ``"fraction"`` (share of
    all tests passed, public and hidden). ``strict_types``: a call test's result must also
    have the expected scalar types (``1`` does not pass for ``True``, nor ``2.0`` for ``2``);
    default Python's ``==``, as HumanEval's own asserts. Feedback policy: ``show_public_tests``,
    ``show_expected``, ``reveal_hidden_counts``, ``max_failing_shown``.
    """

    builtin_datasets: ClassVar[dict[str, Any]] = {
        "humaneval": humaneval_tasks,
        "lcb-sample": lcb_sample_tasks,
        "lcb": lcb_tasks,
    }
    default_dataset: ClassVar[str | None] = "humaneval"

    def __init__(
        self,
        dataset: Any = None,
        *,
        backend: str | SandboxBackend = "auto",
        sandbox: str | SandboxBackend | None = None,
        time_limit_s: float | None = None,
        memory_mb: int | None = None,
        limits: CodeLimits | None = None,
        reward: str = "binary",
        show_public_tests: bool = True,
        show_expected: bool = True,
        reveal_hidden_counts: bool = True,
        max_failing_shown: int = 3,
        allow_unsafe: bool = False,
        strict_types: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        if reward not in ("binary", "fraction"):
            raise ValueError(f"reward must be 'binary' or 'fraction', got {reward!r}")
        self.backend = sandbox if sandbox is not None else backend
        overrides = {k: v for k, v in (("time_s", time_limit_s), ("memory_mb", memory_mb)) if v is not None}
        self.limits = dataclasses.replace(limits or CodeLimits(), **overrides)
        self.reward_mode = reward
        self.policy = FeedbackPolicy(
            show_public_tests=show_public_tests,
            show_expected=show_expected,
            reveal_hidden_counts=reveal_hidden_counts,
            max_failing_shown=max_failing_shown,
            max_chars=self.max_feedback_chars,
        )
        self.allow_unsafe = allow_unsafe
        self.strict_types = strict_types

    def validate_task(self, task: Row) -> Row:
        return normalize_row(task)

    def build_messages(self, task: Row) -> Messages:
        return [{"role": "user", "content": build_prompt(task)}]

    def judge(self, task: Row, action: str) -> tuple[float, Feedback]:
        extraction = extract_code(action)
        if extraction.code is None:
            return 0.0, Feedback(text=extraction.error or "Format error.", verdict="format_error")
        return self.judge_solution(task, extraction.code)

    def oracle_actions(self, task: Row) -> list[str]:
        """The task's canonical solution as an answer (HumanEval, the LCB sample)."""
        task = self.validate_task(task)
        code = task.get("canonical_solution")
        if not code:
            raise NotImplementedError(f"task {self.task_id(task, None)!r} has no canonical solution")
        if task.get("append_to_starter"):
            code = str(task["starter_code"]).rstrip("\n") + "\n" + code  # the complete function
        return [f"```python\n{code.rstrip()}\n```"]

    def judge_solution(self, task: Row, code: str) -> tuple[float, Feedback]:
        """Judge bare Python ``code`` (no answer parsing): for CLIs and canonical solutions."""
        judgement = judge_code(
            assemble_program(task, code),
            task["tests"],
            prelude=task.get("prelude") or "",
            backend=self.backend,
            limits=self.limits,
            policy=self.policy,
            reward=self.reward_mode,  # type: ignore[arg-type]
            allow_unsafe=self.allow_unsafe,
            strict_types=self.strict_types,
        )
        return judgement.reward, judgement.feedback
