"""Use sdpo_envs environments as TRL reward functions, and precompute TRL's privileged-context
column from an environment's feedback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .core import TextEnv
from .env_factory import EnvSpec, make_env_factory
from .executors import Executor, make_executor
from .feedback import Feedback
from .vector import batch_step


def completion_text(completion: Any) -> str:
    """The model's text from a TRL completion (a string, or a list of chat messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal-style content parts
            return " ".join(part.get("text", "") for part in content if isinstance(part, Mapping))
        return str(content)
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def rows_from_columns(columns: Mapping[str, Sequence[Any]], n: int) -> list[dict[str, Any]]:
    """TRL passes dataset columns as lists; rebuild one task row per completion."""
    rows = [{} for _ in range(n)]
    for key, values in columns.items():
        if isinstance(values, Sequence) and not isinstance(values, str) and len(values) == n:
            for row, value in zip(rows, values):
                row[key] = value
    return rows


class EnvRewardFunction:
    """A TRL-convention reward function backed by an environment.

    ``f(prompts, completions, **columns) -> list[float | None]``; the dataset's columns must
    form the env's task rows. A ``judge_error`` gives ``None`` (TRL and our trainers then
    leave that rollout out). ``last_feedbacks`` holds each completion's :class:`Feedback`.
    ``judge_backend``: ``"local"`` (this host's threads, ``max_workers`` of them) or ``"ray"``
    (the cluster at ``ray_address``; ``max_workers`` caps the calls in flight there), or give
    an ``executor`` (``sdpo_envs.executors``) directly.
    """

    def __init__(
        self,
        env: EnvSpec,
        *,
        max_workers: int | None = None,
        timeout_s: float | None = 120.0,
        judge_backend: str = "local",
        ray_address: str | None = None,
        executor: Executor | None = None,
    ):
        self._factory = make_env_factory(env)
        self._local = threading.local()
        self.max_workers = max_workers
        self.timeout_s = timeout_s
        self.executor = executor or make_executor(
            judge_backend, ray_address=ray_address, max_workers=max_workers
        )
        self.last_feedbacks: list[Feedback] = []
        self.__name__ = f"env_reward[{env}]" if isinstance(env, str) else "env_reward"

    def _envs(self, n: int) -> list[TextEnv]:
        pool: list[TextEnv] = getattr(self._local, "pool", [])
        while len(pool) < n:
            pool.append(self._factory())
        self._local.pool = pool
        return pool[:n]

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        n = len(completions)
        rows = rows_from_columns(columns, n)
        envs = self._envs(n)
        for env, row in zip(envs, rows):
            env.reset(options={"task": row})
        texts = [completion_text(c) for c in completions]
        results = batch_step(envs, texts, timeout_s=self.timeout_s, executor=self.executor)
        self.last_feedbacks = [r.info["feedback"] for r in results]
        return [None if fb.is_judge_error else r.reward for r, fb in zip(results, self.last_feedbacks)]


def as_reward_func(env: EnvSpec, **kwargs: Any) -> EnvRewardFunction:
    """Wrap an environment as a reward function for TRL-style trainers."""
    return EnvRewardFunction(env, **kwargs)


def add_privileged_context(
    rows: Sequence[Mapping[str, Any]],
    env: EnvSpec,
    attempts: Sequence[str] | Callable[[list[dict[str, str]]], str],
    *,
    column: str = "privileged_context",
    max_workers: int | None = None,
    judge_backend: str = "local",
    ray_address: str | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Precompute a ``privileged_context`` column from the env's feedback on earlier attempts.

    ``attempts`` are the model's earlier answers (one per row) or a function producing one
    from the chat prompt. Each output row gets ``prompt`` (the env's chat messages) and
    ``column`` (the feedback text; empty when the attempt succeeded or could not be judged),
    ready for TRL's own ``SDPOTrainer`` with ``include_environment_feedback=True``.
    ``judge_backend``/``ray_address``/``executor``: where the attempts are judged, as for
    :class:`EnvRewardFunction`.
    """
    factory = make_env_factory(env)
    envs = [factory() for _ in rows]
    prompts = [e.reset(options={"task": dict(row)})[1]["messages"] for e, row in zip(envs, rows)]
    if callable(attempts):
        attempts = [attempts(p) for p in prompts]
    if len(attempts) != len(rows):
        raise ValueError(f"got {len(attempts)} attempts for {len(rows)} rows")
    executor = executor or make_executor(judge_backend, ray_address=ray_address, max_workers=max_workers)
    results = batch_step(envs, list(attempts), executor=executor)
    out = []
    for row, prompt, result in zip(rows, prompts, results):
        feedback: Feedback = result.info["feedback"]
        text = "" if feedback.success or feedback.is_judge_error else feedback.text
        out.append({**row, "prompt": prompt, column: text})
    return out
