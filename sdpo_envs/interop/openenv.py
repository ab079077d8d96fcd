"""``OpenEnvEnv``: an OpenEnv (``openenv`` 0.10) environment as a ``TextEnv`` -- an
``Environment`` run in this process, or a running OpenEnv server reached through OpenEnv's own
WebSocket client.

>>> from sdpo_envs.interop.openenv import OpenEnvEnv  # doctest: +SKIP
>>> env = OpenEnvEnv("http://127.0.0.1:8000")              # doctest: +SKIP
>>> env = OpenEnvEnv(my_module.CodingEnvironment)           # doctest: +SKIP

How the episode maps:

* **Tasks.** Each task row is passed to ``Environment.reset(**row)`` (a ``"prompt"`` entry is
  kept out and shown before the reset observation). Without ``dataset=`` the rows are
  ``{"seed": i}``: the environment draws its own task from the seed.
* **Prompt and observations.** The reset observation, and every later one, is shown to the
  model as text: its fields other than ``reward``/``done``/``metadata`` that are not empty --
  a single text field as it is, several as ``name: value`` lines (``observation_fn(fields) ->
  str`` overrides this).
* **Actions.** The model's message (its ``<think>`` part removed) fills the action's one text
  field: ``action_field=`` names it, else the action's only required string field, else its
  only string field (``action_fn(text) -> dict`` builds the whole action instead).
* **Turns.** The episode goes on until the observation says ``done`` (or ``max_turns``
  messages); the reward is the last step's (``None`` counts as 0).

**Feedback harvesting rule** (the teacher's text): the step's observation fields other than
``reward``/``done``/``metadata`` that are not empty (e.g. ``stdout``, ``stderr``,
``exit_code``), as ``name: value`` lines; ``info["feedback_source"]`` is
``"openenv:observation.<names>"``. ``feedback_fn(step)`` overrides it; ``step.observation`` is
the ``Observation`` (in process) or its wire dict (server), ``step.info`` its ``metadata``.

**Faults** (judge errors, left out of the loss): ``reset``/``step`` raising, an answer that is
not an Observation or whose ``done``/``reward`` are malformed, a server that refuses, fails or
does not answer within ``connect_timeout_s``/``message_timeout_s`` (the message names its
address and both timeouts). The first adapter for a URL checks that the server answers
``GET /schema``, so a wrong address fails when the run starts (``ConnectionError``). Each
adapter holds one server session (its WebSocket) from its first reset until ``close()`` or until
it is dropped; a server at capacity refuses more (judge errors), so serve with
``max_concurrent_envs`` of at least the generation batch plus the evaluation batch.

Not supported: MCP tool-calling environments (``CallToolAction``), actions that are not one
text field (use ``action_fn``), images in observations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..core import Messages, Turn
from ..tags import strip_thinking
from ..tasks import ProceduralTaskSource
from .openenv_session import InProcessSession, OpenEnvAnswer, RemoteSession
from .peer_env import PeerEnv, PeerError, PeerStep, load_object

URL_SCHEMES = ("http://", "https://", "ws://", "wss://")


def seed_rows(size: int = 1_000_000) -> ProceduralTaskSource:
    """Task rows ``{"seed": i}``: an OpenEnv environment that draws its own tasks."""
    return ProceduralTaskSource(lambda i: {"seed": i}, size=size, name="openenv-seeds")


def text_field(schema: Mapping[str, Any], action_field: str | None) -> str:
    """The action field that carries the model's text (see the module docstring)."""
    properties = {k: v for k, v in dict(schema.get("properties") or {}).items() if k != "metadata"}
    if action_field is not None:
        if action_field not in properties:
            raise ValueError(
                f"the action has no field {action_field!r}; its fields: {', '.join(properties) or 'none'}"
            )
        return action_field
    strings = [k for k, v in properties.items() if isinstance(v, Mapping) and v.get("type") == "string"]
    required = [k for k in strings if k in (schema.get("required") or ())]
    for candidates in (required, strings):
        if len(candidates) == 1:
            return candidates[0]
    raise ValueError(
        "cannot tell which action field gets the model's text (fields: "
        f"{', '.join(properties) or 'none'}; string fields: {', '.join(strings) or 'none'}); "
        "pass action_field=<name> or action_fn=<text -> dict>"
    )


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and v != "" and v != [] and v != {}}


def render_fields(fields: Mapping[str, Any]) -> str:
    """Observation fields as text: one text field as is, several as ``name: value`` lines."""
    present = _present(fields)
    if len(present) == 1 and isinstance(next(iter(present.values())), str):
        return next(iter(present.values()))
    return "\n".join(f"{name}: {_shown(value)}" for name, value in present.items())


class OpenEnvEnv(PeerEnv):
    """An OpenEnv environment (in process, or a server's client); see the module docstring.

    ``env``: an ``http(s)://`` or ``ws(s)://`` URL of a running server; an ``Environment``
    class, factory or instance; or a ``"module:Class"`` path to one (``env_kwargs`` go to its
    constructor). Other arguments: ``action_field``, ``action_fn``, ``action_cls`` (in process,
    when the class does not declare it), ``observation_fn``, ``feedback_fn``,
    ``success_threshold``, ``connect_timeout_s`` / ``message_timeout_s`` (server), and the
    ``TextEnv`` ones (``dataset``, ``max_turns``, ``system_prompt``, ...).
    """

    peer_name = "openenv"

    def __init__(
        self,
        env: Any,
        dataset: Any = None,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        action_field: str | None = None,
        action_fn: Callable[[str], Mapping[str, Any]] | str | None = None,
        action_cls: Any = None,
        observation_fn: Callable[[Mapping[str, Any]], str] | str | None = None,
        connect_timeout_s: float = 10.0,
        message_timeout_s: float = 60.0,
        max_turns: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed_rows() if dataset is None else dataset, max_turns=max_turns, **kwargs)
        if isinstance(env, str) and env.startswith(URL_SCHEMES):
            self.session: InProcessSession | RemoteSession = RemoteSession(
                env, connect_timeout_s=connect_timeout_s, message_timeout_s=message_timeout_s
            )
        else:
            target = load_object(env, "OpenEnv environment") if isinstance(env, str) else env
            if env_kwargs:
                cls, arguments = target, dict(env_kwargs)
                target = lambda: cls(**arguments)  # noqa: E731 - a factory with the user's arguments
            if isinstance(action_cls, str):
                action_cls = load_object(action_cls, "action_cls")
            self.session = InProcessSession(target, action_cls=action_cls)
        self.action_fn = load_object(action_fn, "action_fn") if isinstance(action_fn, str) else action_fn
        self.observation_fn = (
            load_object(observation_fn, "observation_fn")
            if isinstance(observation_fn, str)
            else observation_fn
        )
        self.action_field = action_field
        self._text_field: str | None = None
        if self.action_fn is None:  # an action the model's text cannot fill fails here, not per step
            self._text_field = text_field(self.session.action_schema, action_field)

    # -- PeerEnv --------------------------------------------------------------------------
    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        arguments = {k: v for k, v in task.items() if k != "prompt"}
        answer = self.session.reset(**arguments)
        if answer.done:
            raise PeerError(f"{self.session.address}: reset() returned an observation with done=True")
        parts = [str(task["prompt"]).strip()] if task.get("prompt") else []
        shown = self._render(answer).strip()
        if shown:
            parts.append(shown)
        if not parts:
            raise PeerError(
                f"{self.session.address}: the reset observation has no text to show and the task row no 'prompt'"
            )
        return [{"role": "user", "content": "\n\n".join(parts)}]

    def peer_step(self, action: str) -> Turn:
        answer = self.session.step(self._action(strip_thinking(action)))
        step = PeerStep(
            observation=answer.raw,
            reward=answer.reward,
            done=answer.done,
            info=answer.metadata,
            environment=getattr(self.session, "env", None) or self.session,
        )
        final = answer.done or self.turn >= self.max_turns
        feedback = self.feedback(step, final=final, observation=answer.fields, metadata=answer.metadata)
        reward = 0.0 if answer.reward is None else answer.reward
        if answer.done:
            return Turn(reward, feedback)
        return Turn(reward, feedback, self._render(answer) or "(the environment returned no text)")

    def harvest(self, step: PeerStep) -> tuple[str, str]:
        fields = self._fields(step.observation)
        present = _present(fields)
        if not present:
            return f"The environment returned no observation fields (reward {step.reward}).", "openenv:reward"
        text = "\n".join(f"{name}: {_shown(value)}" for name, value in present.items())
        return text, "openenv:observation." + ",".join(present)

    def close(self) -> None:
        self.session.close()
        super().close()

    # -- helpers ----------------------------------------------------------------------------
    def _action(self, text: str) -> Mapping[str, Any]:
        if self.action_fn is not None:
            action = self.action_fn(text)
            if not isinstance(action, Mapping):
                raise PeerError(
                    f"action_fn returned {type(action).__name__}, expected a dict of action fields"
                )
            return action
        assert self._text_field is not None
        return {self._text_field: text}

    @staticmethod
    def _fields(observation: Any) -> dict[str, Any]:
        if isinstance(observation, Mapping):
            fields = dict(observation)
        else:
            fields = {name: getattr(observation, name) for name in type(observation).model_fields}
        return {k: v for k, v in fields.items() if k not in ("reward", "done", "metadata")}

    def _render(self, answer: OpenEnvAnswer) -> str:
        if self.observation_fn is not None:
            shown = self.observation_fn(dict(answer.fields))
            if not isinstance(shown, str):
                raise PeerError(f"observation_fn returned {type(shown).__name__}, expected str")
            return shown
        return render_fields(answer.fields)


def from_spec(target: str, **kwargs: Any) -> OpenEnvEnv:
    """``openenv:<target>``: a server URL or a ``module:Class`` path (``sdpo_envs.interop.spec``)."""
    return OpenEnvEnv(target, **kwargs)
