"""Environment registry: Gymnasium's, plus plugin discovery through entry points."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sdpo_envs.environments"
_sdpo_ids: set[str] = set()
_loaded_plugins: dict[str, str] = {}


def register(env_id: str, entry_point: str | Callable[..., gym.Env], **kwargs: Any) -> None:
    """Register a text environment under ``env_id`` (e.g. ``"myorg/Sorting-v0"``).

    ``entry_point`` is a ``"module:Class"`` string (imported lazily by ``gymnasium.make``) or
    a class/factory. ``kwargs`` are default constructor arguments, overridable at make time.
    The env checker wrapper is disabled because text envs are validated by ``check_env``
    in the test suite, and the passive checker's numpy assumptions do not apply to text.

    >>> import gymnasium as gym
    >>> register("examples/Math-Reveal-v0", entry_point="environments.math_check.env:MathEnv",
    ...          reveal_answer=True)
    >>> env = gym.make("examples/Math-Reveal-v0")
    >>> env.unwrapped.policy.reveal_answer, "examples/Math-Reveal-v0" in registered_envs()
    (True, True)
    """
    if env_id in gym.registry and env_id in _sdpo_ids:
        existing = gym.registry[env_id]
        if existing.entry_point == entry_point and existing.kwargs == kwargs:
            return
        warnings.warn(f"re-registering environment {env_id!r}", stacklevel=2)
        del gym.registry[env_id]
    gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs, disable_env_checker=True)
    _sdpo_ids.add(env_id)


def registered_envs() -> list[str]:
    """Ids of the text environments registered through :func:`register` or plugins."""
    return sorted(_sdpo_ids)


def loaded_plugins() -> dict[str, str]:
    """Entry-point name -> ``"ok"`` or the error that stopped it from loading."""
    return dict(_loaded_plugins)


def discover_plugins() -> None:
    """Load every entry point of the ``sdpo_envs.environments`` group.

    An entry point names a callable taking no arguments that registers its environments
    (usually through :func:`register`). A broken plugin is reported as a warning; it never
    breaks ``import sdpo_envs``.
    """
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded_plugins:
            continue
        try:
            hook = ep.load()
            if not callable(hook):
                raise TypeError(f"entry point {ep.value!r} is not callable")
            hook()
            _loaded_plugins[ep.name] = "ok"
        except Exception as exc:
            _loaded_plugins[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"sdpo_envs plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
