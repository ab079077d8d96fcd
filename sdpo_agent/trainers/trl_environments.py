"""``environment_factory=``: TRL's way of giving a trainer its environment, accepted as well as
``env=`` (TRL's ``SDPOTrainer`` has no environment support; ``GRPOTrainer`` takes this one)."""

from __future__ import annotations

import functools
from typing import Any

from sdpo_envs.interop.trl_env import TRLEnv


def resolve_environment_factory(
    environment_factory: Any, env: Any, train_dataset: Any, reward_funcs: Any
) -> tuple[Any, Any, Any]:
    """``(env, train_dataset, reward_funcs)`` for a trainer given TRL's ``environment_factory``.

    The factory's class becomes a :class:`~sdpo_envs.interop.trl_env.TRLEnv` (multi-turn tool
    calls, ``get_reward``), as TRL's ``GRPOTrainer`` would run it: the rows of ``train_dataset``
    are what each instance's ``reset(**row)`` receives (without one, TRL's placeholder rows:
    ``reset`` gives the prompt), and ``reward_funcs`` are called as TRL calls them next to an
    environment, with ``environments=[instance]``, so they move into the env. Without a
    factory the arguments come back unchanged.
    """
    if environment_factory is None:
        return env, train_dataset, reward_funcs
    if env is not None:
        raise ValueError("give env= or environment_factory=, not both")
    if isinstance(environment_factory, dict):
        raise ValueError(
            "a dict environment_factory (several environments) is not supported: train on one "
            "environment class, or wrap each in TRLEnv and pass it as env="
        )
    if not callable(environment_factory):
        raise TypeError(
            f"environment_factory must be a class or a zero-argument factory, got {type(environment_factory).__name__}"
        )
    env = functools.partial(TRLEnv, environment_factory, train_dataset, reward_funcs=reward_funcs)
    return env, None, None
