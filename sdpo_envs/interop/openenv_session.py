"""One OpenEnv episode stream, in process or over the network, behind one interface: reset and
step return a checked :class:`OpenEnvAnswer`, and every fault of the peer is a ``PeerError``
whose message says what failed and where (the server's address and the timeouts included)."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import typing
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from openenv.core import GenericEnvClient
from openenv.core.env_server import Action, Environment, Observation

from .peer_env import PeerError, describe_exception

RESERVED_FIELDS = ("reward", "done", "metadata")


@dataclass(frozen=True)
class OpenEnvAnswer:
    """A checked observation: its own fields (all but reward/done/metadata), reward, done."""

    fields: dict[str, Any]
    reward: float | None
    done: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: Any = None  # the Observation object (in process) or the wire dict (server)


def check_answer(fields: Any, reward: Any, done: Any, metadata: Any, raw: Any, where: str) -> OpenEnvAnswer:
    """An :class:`OpenEnvAnswer`, or a ``PeerError`` naming the malformed part."""
    if not isinstance(fields, Mapping):
        raise PeerError(
            f"{where}: the observation is a {type(fields).__name__}, expected an object of fields"
        )
    if not isinstance(done, bool):
        raise PeerError(f"{where}: the observation's 'done' is {done!r}, expected true or false")
    if reward is not None:
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise PeerError(f"{where}: the observation's 'reward' is {reward!r}, expected a finite number")
        reward = float(reward)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise PeerError(
            f"{where}: the observation's 'metadata' is {type(metadata).__name__}, expected an object"
        )
    kept = {k: v for k, v in fields.items() if k not in RESERVED_FIELDS}
    return OpenEnvAnswer(kept, reward, done, dict(metadata or {}), raw)


class InProcessSession:
    """An OpenEnv ``Environment`` run in this process (one instance per session)."""

    def __init__(
        self, env: Environment | type | Callable[[], Environment], action_cls: type[Action] | None = None
    ) -> None:
        if isinstance(env, Environment):
            self.env = copy.deepcopy(env)  # each session its own state
        elif callable(env):
            self.env = env()
        else:
            raise TypeError(f"expected an openenv Environment, its class or a factory, got {env!r}")
        if not isinstance(self.env, Environment):
            raise TypeError(f"{env!r} built a {type(self.env).__name__}, expected an openenv Environment")
        self.address = type(self.env).__name__
        found = action_cls or action_class(type(self.env))
        if found is None:
            name = type(self.env).__name__
            raise ValueError(
                f"cannot tell the Action class of {name}: declare it ({name}(Environment[MyAction, "
                "MyObservation, State])), annotate step(self, action: MyAction), or pass action_cls="
            )
        self.action_cls: type[Action] = found

    @property
    def action_schema(self) -> dict[str, Any]:
        return self.action_cls.model_json_schema()

    def reset(self, **kwargs: Any) -> OpenEnvAnswer:
        return self._checked(self.env.reset(**kwargs), "reset")

    def step(self, action: Mapping[str, Any]) -> OpenEnvAnswer:
        try:
            typed = self.action_cls(**action)
        except Exception as exc:  # the adapter built the action, so a refusal is not the model's
            where = f"{self.address}: building {self.action_cls.__name__}"
            raise PeerError(describe_exception(where, exc)) from exc
        return self._checked(self.env.step(typed), "step")

    def _checked(self, observation: Any, what: str) -> OpenEnvAnswer:
        where = f"{self.address}.{what}()"
        if not isinstance(observation, Observation):
            raise PeerError(
                f"{where} returned {type(observation).__name__}, expected an openenv Observation "
                "(with done, reward and metadata)"
            )
        fields = {name: getattr(observation, name) for name in type(observation).model_fields}
        return check_answer(
            fields, observation.reward, observation.done, observation.metadata, observation, where
        )

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


def action_class(env_cls: type) -> type[Action] | None:
    """The ``Action`` subclass an Environment class declares through its generic parameters or
    the annotation of ``step``'s ``action`` parameter."""
    for base in getattr(env_cls, "__orig_bases__", ()):
        for arg in getattr(base, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, Action):
                return arg
    try:
        hint = typing.get_type_hints(getattr(env_cls, "step", None)).get("action")
    except Exception:  # an annotation that does not resolve names no class
        hint = None
    if isinstance(hint, type) and issubclass(hint, Action):
        return hint
    return None


# Action schemas of the servers already reached in this process (a server's schema does not
# change): only the first adapter for a URL asks, so a wrong URL fails when the run starts, and
# a later outage is a judge error in the episode, never a crash while building environments.
_schemas: dict[str, dict[str, Any]] = {}
_schemas_lock = threading.Lock()


def close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # closing a dead connection may fail too
        client.close()


def close_in_background(client: Any) -> None:
    threading.Thread(target=close_quietly, args=(client,), name="openenv-close", daemon=True).start()


class RemoteSession:
    """A session of a running OpenEnv server, through OpenEnv's own WebSocket client."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0, message_timeout_s: float = 60.0) -> None:
        self.address = url.rstrip("/")
        self.http_url = self.address.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self.connect_timeout_s = connect_timeout_s
        self.message_timeout_s = message_timeout_s
        self._client: Any = None
        self._finalizer: weakref.finalize | None = None
        try:
            self._fetch_schema()  # asks the server only the first time (_schemas)
        except PeerError as exc:  # while setting up, a server that does not answer is a wrong address
            raise ConnectionError(str(exc)) from None

    def _timeouts(self) -> str:
        return f"connect timeout {self.connect_timeout_s} s, message timeout {self.message_timeout_s} s"

    @property
    def action_schema(self) -> dict[str, Any]:
        return self._fetch_schema()

    def _fetch_schema(self) -> dict[str, Any]:
        with _schemas_lock:
            known = _schemas.get(self.address)
        if known is not None:
            return known
        url = f"{self.http_url}/schema"
        try:
            response = requests.get(url, timeout=self.connect_timeout_s)
            response.raise_for_status()
            schema = dict(response.json().get("action") or {})
        except requests.RequestException as exc:
            raise PeerError(
                f"OpenEnv server at {self.address} did not answer GET /schema within "
                f"{self.connect_timeout_s} s: {type(exc).__name__}: {exc}"
            ) from None
        except (ValueError, AttributeError) as exc:
            raise PeerError(
                f"OpenEnv server at {self.address}: /schema is not a JSON object ({exc})"
            ) from None
        with _schemas_lock:
            _schemas[self.address] = schema
        return schema

    def _call(self, what: str, run: Callable[[Any], Any]) -> OpenEnvAnswer:
        try:
            if self._client is None:
                self._client = GenericEnvClient(
                    base_url=self.address,
                    connect_timeout_s=self.connect_timeout_s,
                    message_timeout_s=self.message_timeout_s,
                ).sync()
                # Jobs drop environments without closing them; the client's loop thread would keep
                # its server session open (a capacity slot) for good. Closed when this goes away.
                self._finalizer = weakref.finalize(self, close_in_background, self._client)
            result = run(self._client)
        except TimeoutError as exc:
            self._drop_client()
            raise PeerError(
                f"OpenEnv server at {self.address} did not answer {what} in time ({self._timeouts()})"
            ) from exc
        except Exception as exc:
            self._drop_client()
            raise PeerError(
                f"OpenEnv server at {self.address} failed during {what} ({self._timeouts()}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        where = f"OpenEnv server at {self.address}, {what}"
        return check_answer(
            result.observation, result.reward, result.done, result.metadata, result.observation, where
        )

    def reset(self, **kwargs: Any) -> OpenEnvAnswer:
        return self._call("reset", lambda client: client.reset(**kwargs))

    def step(self, action: Mapping[str, Any]) -> OpenEnvAnswer:
        return self._call("step", lambda client: client.step(dict(action)))

    def _drop_client(self, wait: bool = False) -> None:
        """Forget the connection; after a fault it closes in the background (a server that does
        not answer would hold the close handshake for seconds)."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        if wait:
            close_quietly(client)
        else:
            close_in_background(client)

    def close(self) -> None:
        self._drop_client(wait=True)
