"""How every job builds an environment: a factory of fresh instances from an id, an instance
or a callable (with the nearest registered id suggested for a typo), and Gymnasium vector envs."""

from __future__ import annotations

import copy
import difflib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from .core import TextEnv
from .interop.spec import make_from_spec, split_spec
from .registry import registered_envs
from .value_types import coerce, resolved_hints

EnvSpec = str | gym.Env | Callable[[], gym.Env]


def make_env_factory(env: EnvSpec, **make_kwargs: Any) -> Callable[[], TextEnv]:
    """A zero-argument factory of fresh, unwrapped env instances.

    ``env`` is a registered id (``"sdpo/Math-v0"``), a spec string of another library's env
    (``"openenv:http://127.0.0.1:8000"``, ``"trl:my_module:MyEnv"``; ``sdpo_envs.interop.spec``),
    an env instance (copied; its registry spec is used when it has one) or a factory. Each
    rollout needs its own instance because judging happens concurrently.
    """
    if isinstance(env, str) and split_spec(env) is not None:
        return lambda: make_from_spec(env, **make_kwargs)
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
    make_kwargs = checked_kwargs(env_id, make_kwargs)
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


def checked_kwargs(env_id: str, make_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``make_kwargs`` read as the env class declares them (``1e-3`` text as a float), or
    ``ValueError`` naming the argument and its type (``reveal_answer=maybe`` is no boolean)."""
    entry_point = gym.spec(env_id).entry_point
    cls = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    hints: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", [cls])):  # a subclass's annotation wins
        init = getattr(klass, "__init__", None)
        if init is not None and init is not object.__init__:
            hints.update(resolved_hints(init))
    out = dict(make_kwargs)
    for name, value in make_kwargs.items():
        if name in hints and name != "return":
            try:
                out[name] = coerce(f"{env_id} argument {name}", value, hints[name])
            except TypeError as exc:
                raise ValueError(str(exc)) from None
    return out


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


def make_vector_env(
    env_id: str, num_envs: int, *, asynchronous: bool = False, **kwargs: Any
) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` of a text env (observations come back as a tuple of strings);
    ``asynchronous``: one process per env, texts passed through shared memory (``TextSpace``)."""
    check_env_id(env_id)
    return gym.make_vec(env_id, num_envs, vectorization_mode="async" if asynchronous else "sync", **kwargs)
