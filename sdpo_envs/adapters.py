"""Use sdpo_envs environments from other trainers (TRL reward functions, privileged context,
Gymnasium vector envs)."""

from __future__ import annotations

import copy
import difflib
import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from .core import TextEnv
from .feedback import Feedback
from .registry import registered_envs
from .vector import batch_step

EnvSpec = str | gym.Env | Callable[[], gym.Env]


def make_env_factory(env: EnvSpec, **make_kwargs: Any) -> Callable[[], TextEnv]:
    """A zero-argument factory of fresh, unwrapped env instances.

    ``env`` is a registered id (``"sdpo/Math-v0"``), an env instance (copied; its registry
    spec is used when it has one) or a factory. Each rollout needs its own instance because
    judging happens concurrently.
    """
    if isinstance(env, str):
        check_env_id(env)
        return lambda: _make(env, make_kwargs)
    if isinstance(env, gym.Env):
        spec = env.unwrapped.spec
        if spec is not None and not make_kwargs:
            return lambda: gym.make(spec).unwrapped
        template = env.unwrapped
        return lambda: copy.deepcopy(template)
    if callable(env):
        return lambda: _unwrap(env(**make_kwargs))
    raise TypeError(f"env must be an env id, an env instance or a factory, got {type(env).__name__}")


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` naming the closest registered id when ``env_id`` is unknown."""
    if env_id in gym.registry:
        return
    ours = registered_envs()
    close = difflib.get_close_matches(env_id, ours, n=1, cutoff=0.5) or difflib.get_close_matches(
        env_id, list(gym.registry), n=1, cutoff=0.6
    )
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ValueError(
        f"unknown environment {env_id!r}{hint} (registered: {', '.join(ours)}; `sdpo envs` lists them)"
    )


def _make(env_id: str, make_kwargs: Mapping[str, Any]) -> TextEnv:
    try:
        return gym.make(env_id, **make_kwargs).unwrapped
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None:
            raise
        known = _arguments(gym.spec(env_id).entry_point)
        hint = difflib.get_close_matches(unknown.group(1), known, n=1)
        raise ValueError(
            f"{env_id} takes no argument {unknown.group(1)!r}"
            + (f"; did you mean {hint[0]}?" if hint else "")
            + f" (its arguments: {', '.join(known)})"
        ) from None


def _arguments(entry_point: Any) -> list[str]:
    """Keyword arguments an env class accepts, its base classes' included."""
    cls = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    names: list[str] = []
    for klass in getattr(cls, "__mro__", [cls]):
        init = getattr(klass, "__init__", None)
        if init is None or init is object.__init__:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) and param.name != "self":
                names.append(param.name)
    return sorted(set(names))


def _unwrap(env: Any) -> TextEnv:
    if not isinstance(env, gym.Env):
        raise TypeError(f"env factory returned {type(env).__name__}, expected a gymnasium.Env")
    return env.unwrapped


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
    """

    def __init__(self, env: EnvSpec, *, max_workers: int | None = None, timeout_s: float | None = 120.0):
        self._factory = make_env_factory(env)
        self._local = threading.local()
        self.max_workers = max_workers
        self.timeout_s = timeout_s
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
        results = batch_step(envs, texts, max_workers=self.max_workers, timeout_s=self.timeout_s)
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
) -> list[dict[str, Any]]:
    """Precompute a ``privileged_context`` column from the env's feedback on earlier attempts.

    ``attempts`` are the model's earlier answers (one per row) or a function producing one
    from the chat prompt. Each output row gets ``prompt`` (the env's chat messages) and
    ``column`` (the feedback text; empty when the attempt succeeded or could not be judged),
    ready for TRL's own ``SDPOTrainer`` with ``include_environment_feedback=True``.
    """
    factory = make_env_factory(env)
    envs = [factory() for _ in rows]
    prompts = [e.reset(options={"task": dict(row)})[1]["messages"] for e, row in zip(envs, rows)]
    if callable(attempts):
        attempts = [attempts(p) for p in prompts]
    if len(attempts) != len(rows):
        raise ValueError(f"got {len(attempts)} attempts for {len(rows)} rows")
    results = batch_step(envs, list(attempts), max_workers=max_workers)
    out = []
    for row, prompt, result in zip(rows, prompts, results):
        feedback: Feedback = result.info["feedback"]
        text = "" if feedback.success or feedback.is_judge_error else feedback.text
        out.append({**row, "prompt": prompt, column: text})
    return out


def make_vector_env(
    env_id: str, num_envs: int, *, asynchronous: bool = False, **kwargs: Any
) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` of a text env (observations come back as a tuple of strings);
    ``asynchronous``: one process per env, texts passed through shared memory (``TextSpace``)."""
    check_env_id(env_id)
    return gym.make_vec(env_id, num_envs, vectorization_mode="async" if asynchronous else "sync", **kwargs)
