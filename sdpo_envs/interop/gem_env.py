"""``GemEnv``: a GEM environment (``gem-llm``: ``gem.Env``, a Gymnasium 5-tuple over text) as
a ``TextEnv``.

A GEM env draws its own task at ``reset(seed)``, so a task here is a seed: the task set is
``{"seed": 0}, {"seed": 1}, ...`` (``num_tasks`` of them; rows with a ``seed`` may be given as
``dataset=``), and the same seed gives the same game. Every observation is one chat message
(``user``, or ``tool`` when GEM's info says ``use_tool``) with GEM's ``info["prefix"]`` /
``info["suffix"]`` around it, as GEM's own observation wrappers add them; multi-turn games
stay multi-turn, one action per step, until GEM says ``terminated`` or ``truncated``.
Rewards are GEM's own, step by step (``info["episode_return"]`` is their sum).

Feedback rule (``info["feedback_source"]``):

* ``"gem:observation"`` -- the observation GEM returns with the step that ends the episode
  (e.g. "Congratulations! You guessed the correct number ..."), followed by the step's info
  entries (``key: value``, GEM's prompt aids ``prefix``/``suffix``/``use_tool`` left out);
* ``"gem:info"`` -- the same without an observation to show (GEM's ``TERMINAL_STATE``
  placeholder or an empty text): the info entries alone, or the reward when there are none;
* ``"feedback_fn"`` -- ``feedback_fn(step)`` returned the text (``step.observation`` is GEM's
  observation, ``step.info`` its info, ``step.environment`` the GEM env);
* ``"gem:error"`` -- GEM raised in ``reset``/``step`` or returned something that is not a
  ``(str, number, bool, bool, dict)`` 5-tuple: a ``judge_error``.

``success``: GEM's ``info["correct"]`` or ``info["success"]`` when it reports one, else a final
reward of at least ``success_threshold`` (1.0: GEM's success reward).

GEM's ``reset(seed)`` seeds Python's and NumPy's global generators (GEM's own behaviour).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import gem
from gem.utils.constants import TERMINAL_STATE

from ..core import Messages, Turn
from ..tasks import ProceduralTaskSource
from .peer_env import FeedbackFn, PeerEnv, PeerError, PeerStep

DEFAULT_NUM_TASKS = 100_000
PROMPT_AIDS = frozenset({"prefix", "suffix", "use_tool"})


def render_info(info: Mapping[str, Any]) -> str:
    """``key: value`` lines of the info entries a teacher can read (scalars, short values)."""
    lines = []
    for key, value in info.items():
        if key in PROMPT_AIDS or value is None:
            continue
        if isinstance(value, (str, int, float, bool)) or len(repr(value)) <= 300:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def make_gem_env(env: Any, env_kwargs: Mapping[str, Any] | None = None) -> gem.Env:
    """A GEM env from a registered id (``gem.make(id, **env_kwargs)``), a class/factory, or an instance."""
    if isinstance(env, gem.Env):
        return env
    if isinstance(env, str):
        if env not in gem.envs.registration.ENV_REGISTRY:
            raise ValueError(f"unknown GEM environment {env!r} (gem.print_envs() lists the registered ones)")
        return gem.make(env, **dict(env_kwargs or {}))
    if callable(env):
        made = env(**dict(env_kwargs or {}))
        if not isinstance(made, gem.Env):
            raise TypeError(f"the GEM factory returned {type(made).__name__}, expected a gem.Env")
        return made
    raise TypeError(f"env must be a GEM env id, a gem.Env or a factory, got {type(env).__name__}")


class GemEnv(PeerEnv):
    """A GEM environment, one action per step; see the module docstring."""

    peer_name = "gem"

    def __init__(
        self,
        env: str | gem.Env | Callable[..., gem.Env],
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        dataset: Any = None,
        num_tasks: int = DEFAULT_NUM_TASKS,
        max_turns: int = 100,
        feedback_fn: FeedbackFn | str | None = None,
        success_threshold: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.gem_env = make_gem_env(env, env_kwargs)
        name = env if isinstance(env, str) else type(self.gem_env).__name__
        if dataset is None:
            dataset = ProceduralTaskSource(lambda index: {"seed": index}, size=num_tasks, name=name)
        super().__init__(
            dataset,
            max_turns=max_turns,
            feedback_fn=feedback_fn,
            success_threshold=success_threshold,
            **kwargs,
        )
        self.env_name = name
        self.episode_return = 0.0

    def __deepcopy__(self, memo: dict[int, Any]) -> GemEnv:
        # A GEM env holds one episode's state: a copy of the adapter gets its own GEM env.
        recorded: tuple[tuple[Any, ...], dict[str, Any]] = getattr(self, "_init_arguments", ((), {}))
        args, kwargs = recorded
        fresh = [copy.deepcopy(a, memo) if isinstance(a, gem.Env) else a for a in args]
        if isinstance(kwargs.get("env"), gem.Env):
            kwargs = {**kwargs, "env": copy.deepcopy(kwargs["env"], memo)}
        return type(self)(*fresh, **kwargs)

    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        seed = task.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(
                f"task field 'seed' must be a non-negative integer (a GEM env draws its task from it), got {seed!r}"
            )
        return task

    def task_id(self, task: dict[str, Any], index: int | None) -> str:
        return f"{self.env_name}/seed-{task['seed']}"

    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        self.episode_return = 0.0
        self.observation_role = "user"
        result = self.gem_env.reset(seed=int(task["seed"]))
        if not (
            isinstance(result, tuple)
            and len(result) == 2
            and isinstance(result[0], str)
            and isinstance(result[1], Mapping)
        ):
            raise PeerError(f"GEM reset returned {_shape(result)}, expected (observation: str, info: dict)")
        observation, info = result
        return [{"role": "user", "content": _with_aids(observation, info)}]

    def peer_step(self, action: str) -> Turn:
        result = self.gem_env.step(action)
        observation, reward, terminated, truncated, info = _checked(result)
        self.episode_return += reward
        done = terminated or truncated
        info = {**info, "episode_return": self.episode_return}
        step = PeerStep(
            observation=observation, reward=reward, done=done, info=info, environment=self.gem_env
        )
        if not done:
            self.observation_role = "tool" if info.get("use_tool") else "user"
            return Turn(reward, self.feedback(step), _with_aids(observation, info))
        reported = next((info[k] for k in ("correct", "success") if isinstance(info.get(k), bool)), None)
        success = reward >= self.success_threshold if reported is None else reported
        feedback = self.feedback(
            step,
            verdict="pass" if success else "wrong_answer",
            terminated=terminated,
            truncated=truncated,
            episode_return=self.episode_return,
        )
        return Turn(reward, feedback)

    def harvest(self, step: PeerStep) -> tuple[str, str]:
        if not step.done:
            return step.observation, "gem:observation"
        shown = step.observation if step.observation.strip() and step.observation != TERMINAL_STATE else ""
        fields = render_info({k: v for k, v in step.info.items() if k != "episode_return"})
        if shown:
            return "\n".join(part for part in (shown, fields) if part), "gem:observation"
        return fields or f"The episode ended with reward {step.reward:g}.", "gem:info"

    def close(self) -> None:
        closer = getattr(self.gem_env, "close", None)
        if callable(closer):
            closer()
        super().close()


def _with_aids(observation: str, info: Mapping[str, Any]) -> str:
    text = observation
    if isinstance(info.get("suffix"), str) and info["suffix"]:
        text = (text if not text or text.endswith("\n") else text + "\n") + info["suffix"]
    if isinstance(info.get("prefix"), str):
        text = info["prefix"] + text
    return text


def _shape(value: Any) -> str:
    if isinstance(value, tuple):
        return "a tuple of (" + ", ".join(type(v).__name__ for v in value) + ")"
    return f"a {type(value).__name__}"


def _checked(result: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
    """GEM's step result, or a ``PeerError`` that says what is wrong with it."""
    expected = "expected (observation: str, reward: number, terminated: bool, truncated: bool, info: dict)"
    if not isinstance(result, tuple) or len(result) != 5:
        raise PeerError(f"GEM step returned {_shape(result)}, {expected}")
    observation, reward, terminated, truncated, info = result
    if not isinstance(observation, str):
        raise PeerError(f"GEM step returned an observation of type {type(observation).__name__}, {expected}")
    try:
        value = float(reward)
    except (TypeError, ValueError):
        raise PeerError(f"GEM step returned reward {reward!r}, not a number") from None
    if isinstance(reward, bool) or not math.isfinite(value):
        raise PeerError(f"GEM step returned reward {reward!r}, not a finite number")
    if not all(isinstance(flag, bool) or type(flag).__name__ == "bool_" for flag in (terminated, truncated)):
        raise PeerError(f"GEM step returned terminated={terminated!r}, truncated={truncated!r}, {expected}")
    if not isinstance(info, Mapping):
        raise PeerError(f"GEM step returned info of type {type(info).__name__}, {expected}")
    return observation, value, bool(terminated), bool(truncated), dict(info)


def from_spec(target: str, **kwargs: Any) -> GemEnv:
    """``gem:<env id>``: the GEM env ``gem.make(<env id>, **env_kwargs)`` builds (e.g.
    ``gem:game:GuessTheNumber-v0-easy``); the other keywords are ``GemEnv``'s."""
    return GemEnv(target, **kwargs)


__all__ = ["GemEnv", "from_spec", "make_gem_env", "render_info"]
