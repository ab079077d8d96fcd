"""``SkyRLEnv``: a SkyRL-gym environment (``skyrl-gym``: ``init(prompt)``, ``step(action) ->
{observations, reward, done, metadata}``) as a ``TextEnv``.

SkyRL builds one environment per sample, from the sample's row, and so does this adapter:
each ``reset`` makes a fresh ``skyrl_gym.make(env_class, env_config=..., extras=row)`` (the
row without its ``prompt``, plus ``max_turns``) and calls ``init(prompt)``. Rows are SkyRL's
dataset rows -- ``prompt`` (chat messages), ``env_class``, ``reward_spec``, ``extra_info`` --
given as ``dataset=`` (a list, a JSONL path, a ``datasets.Dataset``). ``env`` (a registered
id, or an env class/factory) builds every row's env; without it, each row's ``env_class`` does.
The messages ``step`` returns are the next observation (several are joined into one); the
episode ends when ``done`` is true. Rewards are SkyRL's, step by step.

Feedback rule (``info["feedback_source"]``):

* ``"skyrl:observations"`` -- the ``observations`` returned with the final step, followed by
  its ``metadata`` entries (``key: value``) and the env's ``get_metrics()``;
* ``"skyrl:metadata"`` -- the same when the final step returns no observation (most
  single-turn SkyRL envs): the metadata and metrics alone, or the reward when there are none;
* ``"feedback_fn"`` -- ``feedback_fn(step)`` returned the text (``step.observation`` is the
  list of messages, ``step.info`` the metadata, ``step.environment`` the SkyRL env);
* ``"skyrl:error"`` -- the env raised in ``make``/``init``/``step``, or ``step`` returned
  something other than a mapping with a message list ``observations``, a numeric ``reward``
  and a boolean ``done``: a ``judge_error``.

``success``: ``metadata["success"]`` / ``metadata["correct"]`` when the env reports one, else a
final reward of at least ``success_threshold`` (1.0). A ``postprocessed_action`` is recorded
in ``info`` but does not replace the sampled text (rollouts keep the tokens as sampled).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import skyrl_gym

from ..core import Messages, Turn
from .gem_env import render_info
from .peer_env import FeedbackFn, PeerEnv, PeerError, PeerStep, chat_prompt

ENV_CLASS = "env_class"


def _messages(value: Any, what: str) -> list[dict[str, str]]:
    """A SkyRL conversation as plain messages, or a ``PeerError`` naming what is wrong."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in value
    ):
        raise PeerError(
            f"SkyRL {what} returned {type(value).__name__} {value!r:.120}, expected a list of {{'role', 'content'}} messages"
        )
    return [{"role": str(m.get("role") or "user"), "content": m["content"]} for m in value]


class SkyRLEnv(PeerEnv):
    """A SkyRL-gym environment, built per episode from its dataset row; see the module docstring."""

    peer_name = "skyrl"

    def __init__(
        self,
        env: str | Callable[..., Any] | None = None,
        *,
        dataset: Any = None,
        env_config: Mapping[str, Any] | None = None,
        max_turns: int = 16,
        feedback_fn: FeedbackFn | str | None = None,
        success_threshold: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(env, str) and env not in skyrl_gym.registry:
            raise ValueError(
                f"unknown SkyRL-gym environment {env!r} (registered: {', '.join(sorted(skyrl_gym.registry))})"
            )
        if env is not None and not isinstance(env, str) and not callable(env):
            raise TypeError(
                f"env must be a SkyRL-gym env id or an env class/factory, got {type(env).__name__}"
            )
        if dataset is None:
            raise ValueError(
                "SkyRLEnv needs dataset=: SkyRL builds each environment from a dataset row (prompt, env_class, reward_spec, extra_info)"
            )
        super().__init__(
            dataset,
            max_turns=max_turns,
            feedback_fn=feedback_fn,
            success_threshold=success_threshold,
            **kwargs,
        )
        self.env_class = env
        self.env_config = dict(env_config or {})
        self.skyrl_env: Any = None

    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        prompt = chat_prompt(task)
        env_class = self.env_class or task.get(ENV_CLASS)
        if env_class is None:
            raise ValueError(f"task has no {ENV_CLASS!r} and SkyRLEnv was given no env")
        if isinstance(env_class, str) and env_class not in skyrl_gym.registry:
            raise ValueError(f"task field {ENV_CLASS!r} names unknown SkyRL-gym environment {env_class!r}")
        return {**task, "prompt": [dict(m) for m in prompt]}

    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        self._close_peer()
        self.observation_role = "user"
        env_class: Any = self.env_class or task.get(ENV_CLASS)
        extras = {k: copy.deepcopy(v) for k, v in task.items() if k not in ("prompt", ENV_CLASS)}
        extras.setdefault("max_turns", self.max_turns)
        if isinstance(env_class, str):
            self.skyrl_env = skyrl_gym.make(env_class, env_config=dict(self.env_config), extras=extras)
        else:
            self.skyrl_env = env_class(env_config=dict(self.env_config), extras=extras)
        result = self.skyrl_env.init([dict(m) for m in task["prompt"]])
        if not (isinstance(result, tuple) and len(result) == 2):
            raise PeerError(
                f"SkyRL init returned {type(result).__name__}, expected (prompt messages, metadata)"
            )
        return _messages(result[0], "init")

    def peer_step(self, action: str) -> Turn:
        if self.skyrl_env is None:
            raise PeerError("no SkyRL environment: reset() first")
        out = self.skyrl_env.step(action)
        if not isinstance(out, Mapping) or not {"observations", "reward", "done"} <= set(out):
            raise PeerError(
                f"SkyRL step returned {type(out).__name__} {out!r:.120}, expected a mapping with observations, reward, done (and metadata)"
            )
        observations = _messages(out["observations"], "step observations") if out["observations"] else []
        reward, done = out["reward"], out["done"]
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise PeerError(f"SkyRL step returned reward {reward!r}, not a finite number")
        if not isinstance(done, bool):
            raise PeerError(f"SkyRL step returned done={done!r}, expected a bool")
        metadata = out.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise PeerError(
                f"SkyRL step returned metadata of type {type(metadata).__name__}, expected a dict"
            )
        info = dict(metadata)
        if out.get("postprocessed_action") is not None:
            info["postprocessed_action"] = out["postprocessed_action"]
        step = PeerStep(
            observation=observations, reward=float(reward), done=done, info=info, environment=self.skyrl_env
        )
        if not done:
            text = "\n\n".join(m["content"] for m in observations)
            self.observation_role = (
                "tool" if observations and all(m["role"] == "tool" for m in observations) else "user"
            )
            return Turn(float(reward), self.feedback(step), text)
        reported = next(
            (metadata[k] for k in ("success", "correct") if isinstance(metadata.get(k), bool)), None
        )
        success = reward >= self.success_threshold if reported is None else reported
        return Turn(
            float(reward), self.feedback(step, verdict="pass" if success else "wrong_answer", metadata=info)
        )

    def harvest(self, step: PeerStep) -> tuple[str, str]:
        shown = "\n\n".join(m["content"] for m in step.observation)
        if not step.done:
            return shown or "The environment goes on.", "skyrl:observations"
        metrics = _metrics(step.environment)
        fields = "\n".join(part for part in (render_info(step.info), render_info(metrics)) if part)
        if shown:
            return "\n".join(part for part in (shown, fields) if part), "skyrl:observations"
        return fields or f"The episode ended with reward {step.reward:g}.", "skyrl:metadata"

    def _close_peer(self) -> None:
        env, self.skyrl_env = self.skyrl_env, None
        if env is not None:
            with contextlib.suppress(
                Exception
            ):  # closing a finished episode's env must not break the next one
                env.close()

    def close(self) -> None:
        self._close_peer()
        super().close()


def _metrics(env: Any) -> dict[str, Any]:
    get = getattr(env, "get_metrics", None)
    try:
        metrics = get() if callable(get) else {}
    except Exception:  # metrics are extra context, not part of the verdict
        return {}
    return dict(metrics) if isinstance(metrics, Mapping) else {}


def from_spec(target: str, **kwargs: Any) -> SkyRLEnv:
    """``skyrl:<env id>``: episodes of the SkyRL-gym env registered as ``<env id>`` (e.g.
    ``skyrl:gsm8k``), on the rows of ``dataset=``; the other keywords are ``SkyRLEnv``'s."""
    return SkyRLEnv(target, **kwargs)


__all__ = ["SkyRLEnv", "from_spec"]
