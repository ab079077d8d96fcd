"""Driving a classic ``verifiers`` rollout one model turn at a time.

A verifiers environment runs its own loop (``Environment.rollout``) and asks a ``vf.Client``
for each model turn. Here that client is the policy: its ``get_response`` hands the prompt
to :class:`RolloutDriver` and waits for the text of the next Gymnasium ``step``. The rollout
runs unchanged (its stop conditions, ``env_response``, cleanup handlers, timeouts) on a
private event loop that only runs while ``reset``/``step`` is inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import verifiers as vf
from verifiers.types import Response, ResponseMessage, ToolCall

from ..tool_calls import TOOL_CALL_OPEN, MalformedCall
from ..tool_calls import parse_tool_calls as read_tool_calls

# Reward functions that raised during this rollout's scoring (verifiers logs them and scores 0).
_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "vf_reward_failures", default=None
)
_WRAPPED = "__sdpo_records_failures__"


def record_reward_failures(rubric: Any) -> None:
    """Wrap a rubric's reward functions (in place, once) so that one that raises is recorded
    for the rollout being scored; verifiers still logs it and scores it 0 as before."""
    for inner in getattr(rubric, "rubrics", None) or []:
        record_reward_failures(inner)
    funcs = getattr(rubric, "funcs", None)
    if not isinstance(funcs, list):
        return
    for i, func in enumerate(funcs):
        if getattr(func, _WRAPPED, False):
            continue

        @functools.wraps(func)
        async def recorded(*args: Any, __func: Any = func, **kwargs: Any) -> Any:
            try:
                result = __func(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result
            except Exception as exc:
                failures = _failures.get()
                if failures is not None:
                    failures.append(f"{getattr(__func, '__name__', __func)!s}: {type(exc).__name__}: {exc}")
                raise

        setattr(recorded, _WRAPPED, True)
        funcs[i] = recorded


@dataclass
class Request:
    """The rollout waits for the model: the prompt it would send, and where the answer goes."""

    prompt: list[Any]
    answer: asyncio.Future


class PolicyClient(vf.Client):
    """A ``vf.Client`` whose model is whoever calls :meth:`RolloutDriver.answer`."""

    def __init__(self, driver: RolloutDriver) -> None:
        super().__init__(None)
        self.driver = driver

    def setup_client(self, config: Any) -> None:
        return None

    async def to_native_tool(self, tool: Any) -> Any:
        return tool

    async def to_native_prompt(self, messages: Any) -> tuple[Any, dict]:
        return messages, {}

    async def get_native_response(
        self, prompt: Any, model: str, sampling_args: Any, tools: Any = None, **kwargs: Any
    ) -> Any:
        raise NotImplementedError("PolicyClient answers through get_response")

    async def raise_from_native_response(self, response: Any) -> None:
        return None

    async def from_native_response(self, response: Any) -> Response:
        return response

    async def close(self) -> None:
        return None

    async def get_response(
        self, prompt: Any, model: str, sampling_args: Any, tools: Any = None, **kwargs: Any
    ) -> Response:
        self.driver.live_state = kwargs.get("state")
        answer = asyncio.get_running_loop().create_future()
        self.driver.post(Request(prompt=list(prompt), answer=answer))
        return await answer


def model_response(text: str, tool_calls: list[ToolCall] | None) -> Response:
    message = ResponseMessage(
        content=text,
        tool_calls=tool_calls or None,
        finish_reason="tool_calls" if tool_calls else "stop",
        is_truncated=False,
    )
    return Response(id=uuid.uuid4().hex, created=int(time.time()), model="policy", message=message)


class RolloutDriver:
    """One verifiers rollout at a time, advanced by :meth:`start` and :meth:`answer`.

    Both return the next :class:`Request` (the rollout wants another model turn) or ``None``
    (the rollout finished: :attr:`state` is scored, or :attr:`error` says why not).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None
        self.pending: Request | None = None
        self._posted: asyncio.Future | None = None
        self.state: Any = None  # the scored state, once the rollout finished
        self.live_state: Any = None  # the state of the rollout while it runs
        self.failed_reward_functions: list[str] = []

    def post(self, request: Request) -> None:
        self.pending = request
        if self._posted is not None and not self._posted.done():
            self._posted.set_result(None)

    def start(self, env: vf.Environment, row: dict[str, Any]) -> Request | None:
        self.cancel()
        if self.loop.is_running() or self.loop.is_closed():  # a step that hung: leave that loop behind
            self.loop = asyncio.new_event_loop()
        self.failed_reward_functions = []
        self.task = self.loop.create_task(self._rollout(env, row, PolicyClient(self)))
        return self._advance()

    def answer(self, response: Response) -> Request | None:
        if self.pending is None or self.task is None:
            raise RuntimeError("the verifiers rollout is not waiting for a model turn")
        request, self.pending = self.pending, None
        request.answer.set_result(response)
        return self._advance()

    async def _rollout(self, env: vf.Environment, row: dict[str, Any], client: PolicyClient) -> Any:
        # What Environment.run_rollout does for one rollout, without the result serialisation.
        state = await env.rollout(row, client, "policy", {})
        return await self._score(env, state)

    async def _score(self, env: vf.Environment, state: Any) -> Any:
        _failures.set(self.failed_reward_functions)
        if env.score_rollouts:
            await env.rubric.score_rollout(state)
        else:
            await env.rubric.dummy_score_rollout(state)
        await env.rubric.cleanup(state)
        return state

    def stop_and_score(self, env: vf.Environment) -> None:
        """End a rollout that wants more turns (its cleanup renders the completion), then
        score it, as a verifiers turn limit would."""
        state = self.live_state
        self.cancel()
        if state is None:
            raise RuntimeError("the rollout has no state to score")
        state["is_completed"] = True
        state["is_truncated"] = True
        state["stop_condition"] = "max_turns_reached"
        self.state = self.loop.run_until_complete(self.loop.create_task(self._score(env, state)))

    def _advance(self) -> Request | None:
        assert self.task is not None
        self._posted = self.loop.create_future()
        self.loop.run_until_complete(
            asyncio.wait([self.task, self._posted], return_when=asyncio.FIRST_COMPLETED)
        )
        if self.task.done():
            self.pending = None
            self.state = self.task.result()  # re-raises what the rollout raised
            return None
        return self.pending

    def cancel(self) -> None:
        """Stop a rollout that is still running (its ``finally`` cleanup runs)."""
        task, self.task, self.pending, self.state, self.live_state = self.task, None, None, None, None
        if task is None or task.done() or self.loop.is_running() or self.loop.is_closed():
            return
        task.cancel()
        with contextlib.suppress(Exception):  # cleanup of an abandoned rollout must not break the next one
            self.loop.run_until_complete(asyncio.wait([task], timeout=5))

    def close(self) -> None:
        self.cancel()
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (read by
    ``sdpo_envs.tool_calls``, in linear time) as verifiers ``ToolCall``s, and the text before
    them. A block that cannot be read is passed on as its raw text, so the environment reports
    the error to the model as it would for any malformed call."""
    calls = []
    for i, call in enumerate(read_tool_calls(text)):
        if isinstance(call, MalformedCall):
            calls.append(ToolCall(id=f"call_{i}", name="", arguments=call.raw))
        else:
            calls.append(ToolCall(id=f"call_{i}", name=call.name, arguments=json.dumps(call.arguments)))
    return (text[: text.find(TOOL_CALL_OPEN)].strip() if calls else text), calls


def tool_schemas(tool_defs: list[Any] | None) -> list[dict[str, Any]]:
    """verifiers ``Tool`` definitions as the OpenAI function schemas chat templates render."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
        }
        for t in tool_defs or []
    ]


def message_text(message: Any) -> str:
    """The text of a verifiers message (a pydantic model or a dict; content parts joined)."""
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


def message_role(message: Any) -> str:
    role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
    return str(role or "user")
