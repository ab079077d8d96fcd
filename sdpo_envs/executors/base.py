"""``Executor``: where environment steps and judge calls run (this host's threads, or a Ray
cluster), behind one interface so trainers, jobs and reward functions need not know which."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym

from .outcome import Outcome
from .steps import StepResult, adopt, judge_error_result, ship, step_pair, step_shipped


class Executor(ABC):
    """Runs batches of calls concurrently; results come back in input order.

    ``map`` runs ``fn(item)`` for each item; ``step`` steps each env with its action. Neither
    raises for what a call does: a call that raises, hangs past ``timeout_s`` or whose
    machinery fails becomes an :class:`Outcome` with an error (a ``judge_error`` step).
    """

    name: ClassVar[str]
    # True when calls run in other processes: steps then ship the env and adopt its new state.
    remote: ClassVar[bool] = False

    @abstractmethod
    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, timeout_s: float | None = None
    ) -> list[Outcome]:
        """``fn(item)`` for each item, concurrently."""

    def step(
        self, envs: Sequence[gym.Env], actions: Sequence[str], *, timeout_s: float | None = None
    ) -> list[StepResult]:
        """``env.step(action)`` for each pair; each env is left as a local step leaves it."""
        if len(envs) != len(actions):
            raise ValueError(f"got {len(envs)} environments but {len(actions)} actions")
        if not envs:
            return []
        if not self.remote:
            outcomes = self.map(step_pair, list(zip(envs, actions)), timeout_s=timeout_s)
            return [o.value if o.ok else judge_error_result(o.error) for o in outcomes]
        outcomes = self.map(step_shipped, [(ship(e), a) for e, a in zip(envs, actions)], timeout_s=timeout_s)
        results = []
        for env, outcome in zip(envs, outcomes):
            if not outcome.ok:
                results.append(judge_error_result(outcome.error))
                continue
            result, state = outcome.value
            adopt(env, state)
            results.append(result)
        return results

    def close(self) -> None:
        """Release what the executor holds (workers, connections); it may not be used after."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
