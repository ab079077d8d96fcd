"""An OpenEnv server for any sdpo environment (``sdpo serve --env <id> --port <p>``).

Built on OpenEnv 0.10's own app factory (``openenv.core.env_server.create_app``): the routes,
the WebSocket session protocol (``/ws``, one environment per session, what ``EnvClient`` and
``GenericEnvClient`` speak), ``/schema``, ``/health`` and the stateless HTTP ``/reset`` and
``/step`` are OpenEnv's. What is ours is the environment behind them:

* ``reset(seed=, episode_id=, task_index=, task=)``: ``task_index`` picks a task of the env's
  own set, ``task`` gives a task row, neither draws one (seeded by ``seed``). The observation's
  ``text`` is the prompt, ``messages`` the chat, ``tools`` the tool schemas of a tool env.
* ``step({"message": <the model's text>})``: one assistant message. The observation carries
  ``reward``, ``done``, the judge's ``verdict`` and ``feedback`` text, ``success``, the env's
  reply in ``text`` (tool results of a multi-turn env; empty once the episode ends),
  ``messages``, and in ``metadata`` the feedback's structured ``details``.
* Nothing a client sends gives a server error: an action without a text ``message`` (or with
  fields besides it) is answered with a ``format_error`` verdict, reward 0 and the episode
  unchanged; a bad reset option, a step before ``reset`` or after the end, with ``error``
  saying what to do. Over plain HTTP every request gets a fresh environment (OpenEnv's rule),
  so a step there has no episode: use the WebSocket session, as OpenEnv's clients do.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI
from openenv.core import EnvClient
from openenv.core.client_types import StepResult
from openenv.core.env_server import Action, Environment, Observation, State, create_app
from pydantic import ConfigDict, Field

from ..core import TextEnv
from ..env_factory import make_env_factory
from ..feedback import Feedback

RESET_OPTIONS = ("seed", "episode_id", "task_index", "task")


class SDPOAction(Action):
    """One assistant message. Extra fields are let through so that ``step`` can answer a
    malformed action with a verdict instead of a validation error."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, arbitrary_types_allowed=True)
    message: Any = Field(default=None, description="the model's text (one assistant message)")


class SDPOObservation(Observation):
    """What the sdpo environment answered, with its verdict and feedback."""

    text: str = Field(default="", description="the prompt (reset) or the env's reply (step)")
    verdict: str | None = Field(default=None, description="the judge's verdict of the last step")
    feedback: str = Field(default="", description="the judge's feedback text on the last step")
    success: bool = Field(default=False, description="whether the last step solved the task")
    messages: list[dict[str, Any]] = Field(default_factory=list, description="the episode's chat")
    tools: list[dict[str, Any]] | None = Field(default=None, description="tool schemas of a tool env")
    task_id: str | None = Field(default=None, description="the task's id")
    turn: int = Field(default=0, description="assistant messages judged in this episode")
    error: str | None = Field(default=None, description="what was wrong with the request, if anything")


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class SDPOServerEnvironment(Environment):
    """An OpenEnv ``Environment`` around one sdpo :class:`~sdpo_envs.TextEnv` (see the module
    docstring); each WebSocket session gets its own."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, env_factory: Callable[[], TextEnv], env_id: str = "env") -> None:
        super().__init__()
        self._env = env_factory()
        self._env_id = env_id
        self._state = State(episode_id=None, step_count=0)
        self._open = False
        self._last: SDPOObservation | None = None

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> SDPOObservation:
        """Start an episode; ``task_index`` or ``task`` pick the task, else one is drawn."""
        self._open = False
        unknown = sorted(set(kwargs) - set(RESET_OPTIONS))
        if unknown:
            return self._refusal(f"unknown reset option(s) {unknown}; supported: {', '.join(RESET_OPTIONS)}")
        options: dict[str, Any] = {}
        if kwargs.get("task_index") is not None:
            options["index"] = kwargs["task_index"]
        elif kwargs.get("task") is not None:
            options["task"] = kwargs["task"]
        try:
            if "index" in options and not isinstance(options["index"], int):
                raise TypeError(f"task_index must be an integer, got {options['index']!r}")
            if "task" in options and not isinstance(options["task"], Mapping):
                raise TypeError(f"task must be a task row (an object), got {type(options['task']).__name__}")
            text, info = self._env.reset(seed=seed, options=options or None)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            return self._refusal(f"reset failed: {type(exc).__name__}: {exc}")
        self._open = True
        self._state = State(episode_id=episode_id, step_count=0, env_id=self._env_id, task_id=info["task_id"])
        self._last = SDPOObservation(
            text=text,
            messages=info["messages"],
            tools=_json_safe(info["tools"]) if info.get("tools") is not None else None,
            task_id=info["task_id"],
            reward=None,
            done=False,
            metadata={"env_id": self._env_id},
        )
        return self._last

    def step(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> SDPOObservation:
        """Judge one assistant message (``action.message``)."""
        problem = _action_problem(action)
        if problem is not None:
            return self._malformed(problem)
        if not self._open:
            return self._refusal(
                "no episode is running: call reset first (over plain HTTP each request gets a fresh "
                "environment: use the WebSocket session /ws, as OpenEnv's EnvClient does)"
            )
        text, reward, terminated, truncated, info = self._env.step(action.message)
        feedback: Feedback = info["feedback"]
        done = bool(terminated or truncated)
        self._open = not done
        self._state.step_count += 1
        self._state.verdict = feedback.verdict  # type: ignore[attr-defined]  (State allows extra fields)
        self._last = SDPOObservation(
            text=text,
            verdict=feedback.verdict,
            feedback=feedback.text,
            success=feedback.success,
            messages=info["messages"],
            task_id=info["task_id"],
            turn=info["turn"],
            reward=None if feedback.is_judge_error else float(reward),
            done=done,
            metadata={
                "env_id": self._env_id,
                "terminated": bool(terminated),
                "truncated": bool(truncated),
                "details": _json_safe(feedback.details),
            },
        )
        return self._last

    @property
    def state(self) -> State:
        return self._state

    def close(self) -> None:
        self._env.close()

    def _refusal(self, error: str) -> SDPOObservation:
        return SDPOObservation(
            error=error, done=not self._open, reward=None, metadata={"env_id": self._env_id}
        )

    def _malformed(self, problem: str) -> SDPOObservation:
        """A format error on an action that is not one message of text; the episode stays where it was."""
        previous = self._last
        return SDPOObservation(
            text=previous.text if previous else "",
            verdict="format_error",
            feedback=f"Format error: {problem}.",
            messages=previous.messages if previous else [],
            task_id=previous.task_id if previous else None,
            turn=previous.turn if previous else 0,
            reward=0.0,
            done=False,
            metadata={"env_id": self._env_id, "details": {"reason": "malformed_action"}},
        )


def _action_problem(action: Action) -> str | None:
    extra = sorted((action.model_extra or {}).keys())
    message = getattr(action, "message", None)
    if message is None:
        got = f" (it has {', '.join(map(repr, extra))})" if extra else ""
        return f"the action must carry the model's text in 'message'{got}"
    if not isinstance(message, str):
        return f"'message' must be a string (the model's text), got {type(message).__name__}"
    if extra:
        return f"unexpected action field(s) {', '.join(map(repr, extra))}; an action is {{'message': <text>}}"
    return None


def create_sdpo_app(env: str, *, max_sessions: int = 8, **make_kwargs: Any) -> FastAPI:
    """The OpenEnv FastAPI app serving the sdpo environment ``env`` (id or spec string);
    ``make_kwargs`` go to ``gymnasium.make``. One environment is built here to check them."""
    factory = make_env_factory(env, **make_kwargs)
    factory().close()  # an unknown id or a bad argument fails now, not in a client's session
    return create_app(
        functools.partial(SDPOServerEnvironment, factory, env),
        SDPOAction,
        SDPOObservation,
        env_name=env,
        max_concurrent_envs=max_sessions,
    )


def serve(
    env: str, *, host: str = "127.0.0.1", port: int = 8000, max_sessions: int = 8, **make_kwargs: Any
) -> None:
    """Serve ``env`` until interrupted; ``port=0`` picks a free port. Prints the address once
    the socket is bound (``serving <env> on http://host:port``)."""
    app = create_sdpo_app(env, max_sessions=max_sessions, **make_kwargs)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    print(f"serving {env} on http://{host}:{bound} (OpenEnv protocol; WebSocket /ws)", flush=True)
    config = uvicorn.Config(app, log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


class SDPOEnvClient(EnvClient[SDPOAction, SDPOObservation, State]):
    """OpenEnv's ``EnvClient`` typed for :class:`SDPOObservation`:
    ``SDPOEnvClient(base_url="http://127.0.0.1:8000").sync()`` then ``reset`` / ``step``."""

    def _step_payload(self, action: SDPOAction | str) -> dict[str, Any]:
        if isinstance(action, str):
            return {"message": action}
        return action.model_dump(exclude={"metadata"}, exclude_none=True)

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[SDPOObservation]:
        fields = {
            k: v for k, v in payload.get("observation", {}).items() if k in SDPOObservation.model_fields
        }
        fields.update(reward=payload.get("reward"), done=payload.get("done", False))
        fields["metadata"] = payload.get("metadata") or fields.get("metadata") or {}
        observation = SDPOObservation(**fields)
        return StepResult(observation=observation, reward=observation.reward, done=observation.done)

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State(**payload)
