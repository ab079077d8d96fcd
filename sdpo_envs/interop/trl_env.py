"""``TRLEnv``: a TRL (1.16) ``environment_factory`` class as a multi-turn ``TextEnv``.

A TRL environment is a class with ``reset(self, **row) -> str | None``, public typed methods
with Google-style docstrings (the tools), and optionally ``get_reward(self) -> float``; TRL's
``GRPOTrainer(environment_factory=...)`` builds one instance per rollout. ``TRLEnv`` runs the
same class the way TRL does:

* **Prompt.** The task row's ``prompt`` (a message list or a string), with the text
  ``reset(**row)`` returns appended to the last user message. Without ``dataset=`` the rows
  are TRL's placeholder (an empty user message), so ``reset`` must return the prompt.
* **Tools.** The class's public functions but ``reset`` and ``get_reward`` (async ones too),
  schemas from their signatures and docstrings (``transformers.get_json_schema``, as TRL).
  They reach the chat template through ``info["tools"]`` (``tools_in_prompt=True`` writes
  them into the prompt instead, with the call format, for templates without tool support).
* **Turns.** An assistant message with Hermes/Qwen ``<tool_call>`` blocks runs them (parsed
  as in ``ToolUse-v0``); the results come back as a ``tool`` message and the episode goes on.
  A message without a tool call, or ``max_turns`` messages, ends it.
* **Reward.** The sum of ``get_reward()`` and of the ``reward_funcs`` (TRL reward functions,
  called with ``prompts``, ``completions``, ``environments=[instance]`` and the row's other
  columns; ``None`` skips one); a source that raises is a judge error.

**Feedback harvesting rule.** While the episode goes on: the errors of this message's tool
calls (verdict ``tool_error``), else the tools' returned text. At the end: the score, every
tool error of the episode, and the last environment message (the last tool result), or that
no tool was called (naming the tools offered). ``info["feedback_source"]`` is
``"trl:tool_results"`` / ``"trl:episode"``; ``feedback_fn(step)`` overrides the rule
(``step.environment`` is the TRL instance, ``step.observation`` the last tool message or
``None``, ``step.info`` the calls and errors).

**Faults** (judge errors): ``reset`` or a reward source raising, ``reset`` returning something
other than a string or ``None``, no reward source scoring the rollout. A tool that raises is
the model's tool error, shown to it, as in TRL.

Not supported: multimodal (list) results of ``reset`` or tools, TRL's multi-environment
``dict`` factories (wrap each class on its own).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core import Messages, Turn
from ..feedback import Verdict
from ..tags import strip_thinking
from ..tasks import ProceduralTaskSource
from ..tool_calls import MalformedCall, parse_tool_calls
from ..tools import Tool, Toolbox, ToolResult, call_label, render_results
from .peer_env import PeerEnv, PeerError, PeerStep, describe_exception, load_object

RESERVED_METHODS = ("reset", "get_reward")
CALL_FORMAT = (
    "To call a tool, write\n"
    '<tool_call>{"name": <tool name>, "arguments": {<argument name>: <value>, ...}}</tool_call>\n'
    "You may call several tools in one message; their results come back in the next message. "
    "When you are done, reply without a tool call."
)


def placeholder_rows() -> ProceduralTaskSource:
    """TRL's rows when the environment owns the data: an empty user message each."""
    return ProceduralTaskSource(
        lambda i: {"prompt": [{"role": "user", "content": ""}]}, name="trl-placeholder"
    )


def _sync(method: Callable[..., Any]) -> Callable[..., Any]:
    """An async tool as a blocking call (its own event loop, in the judging thread)."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(method(*args, **kwargs))

    return run


def environment_tools(instance: Any) -> list[Tool]:
    """The tools TRL would expose for ``instance``: public functions of its class."""
    tools = []
    for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction):
        if name in RESERVED_METHODS or name.startswith("_"):
            continue
        method = getattr(instance, name)
        if inspect.iscoroutinefunction(method):
            method = _sync(method)
        try:
            tools.append(Tool.from_function(method, name=name))
        except Exception as exc:
            raise ValueError(
                f"{type(instance).__name__}.{name} cannot be a tool: {exc} (TRL needs type hints and a "
                "Google-style docstring with an Args section; make it private with a leading _ otherwise)"
            ) from None
    return tools


def _load_all(funcs: Any) -> list[Callable[..., Any]]:
    if funcs is None:
        return []
    if callable(funcs) or isinstance(funcs, str):
        funcs = [funcs]
    loaded = [load_object(f, "reward function") if isinstance(f, str) else f for f in funcs]
    for func in loaded:
        if not callable(func):
            raise TypeError(f"reward function {func!r} is not callable")
    return loaded


class TRLEnv(PeerEnv):
    """A TRL ``environment_factory`` class (or factory, or ``"module:Class"``); see the module
    docstring. Arguments: ``dataset`` (rows passed to ``reset``), ``reward_funcs``,
    ``feedback_fn``, ``success_threshold``, ``tools_in_prompt``, ``max_turns`` (assistant
    messages, default 8), ``max_tool_output_chars``, and the other ``TextEnv`` arguments."""

    peer_name = "trl"
    observation_role = "tool"

    def __init__(
        self,
        environment_factory: Any,
        dataset: Any = None,
        *,
        reward_funcs: Callable[..., Any] | str | Iterable[Callable[..., Any] | str] | None = None,
        tools_in_prompt: bool = False,
        max_turns: int = 8,
        max_tool_output_chars: int = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(placeholder_rows() if dataset is None else dataset, max_turns=max_turns, **kwargs)
        factory = (
            load_object(environment_factory, "TRL environment")
            if isinstance(environment_factory, str)
            else environment_factory
        )
        if not callable(factory):
            raise TypeError(f"environment_factory must be a class or a factory, got {factory!r}")
        self.environment = factory()
        if not callable(getattr(self.environment, "reset", None)):
            raise ValueError(
                f"{type(self.environment).__name__} has no callable reset(): a TRL environment needs one"
            )
        self.reward_funcs = _load_all(reward_funcs)
        self.has_get_reward = callable(getattr(self.environment, "get_reward", None))
        if not self.reward_funcs and not self.has_get_reward:
            raise ValueError(
                f"no reward source: {type(self.environment).__name__} has no get_reward() and no "
                "reward_funcs were given"
            )
        self.toolbox = Toolbox(environment_tools(self.environment), max_output_chars=max_tool_output_chars)
        self.tools_in_prompt = tools_in_prompt
        self._row: dict[str, Any] = {}
        self._prompt: Messages = []
        self._completion: list[dict[str, Any]] = []
        self._results: list[ToolResult] = []

    # -- PeerEnv --------------------------------------------------------------------------
    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        self._row, self._completion, self._results = dict(task), [], []
        prompt = task.get("prompt")
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt:
            messages = [dict(m) for m in prompt]
        else:
            messages = [{"role": "user", "content": ""}]
        observation = self.environment.reset(**task)
        if observation is not None and not isinstance(observation, str):
            raise PeerError(
                f"{type(self.environment).__name__}.reset() returned {type(observation).__name__}; "
                "expected a string or None (multimodal observations are not supported)"
            )
        if observation:
            messages[-1] = {**messages[-1], "content": str(messages[-1]["content"]) + observation}
        if not str(messages[-1]["content"]).strip():
            raise PeerError(
                f"no prompt: the task row has no 'prompt' and {type(self.environment).__name__}.reset() "
                "returned none"
            )
        self._prompt = [dict(m) for m in messages]
        if self.tools_in_prompt:
            schemas = "\n".join(json.dumps(s, ensure_ascii=False) for s in self.tool_schemas())
            extra = f"\n\nAvailable tools (JSON schemas):\n{schemas}\n\n{CALL_FORMAT}"
            messages[-1] = {**messages[-1], "content": messages[-1]["content"] + extra}
        return messages

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        observation, info = super().reset(seed=seed, options=options)
        info["tools"] = self.tool_schemas()
        return observation, info

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The JSON schemas of the environment's tools, for ``apply_chat_template(tools=...)``."""
        return json.loads(json.dumps(self.toolbox.schemas(self.toolbox.names)))  # a copy the caller may edit

    def peer_step(self, action: str) -> Turn:
        text = strip_thinking(action)
        self._completion.append({"role": "assistant", "content": action})
        calls = parse_tool_calls(text)
        if calls and self.turn < self.max_turns:
            return self._run_calls(calls)
        return self._finish()

    def harvest(self, step: PeerStep) -> tuple[str, str]:
        info = step.info
        if not step.done:
            errors = info.get("errors") or []
            if errors:
                return "Tool call error(s):\n" + "\n".join(errors), "trl:tool_results"
            return f"Tool results:\n{step.observation}", "trl:tool_results"
        parts = [f"The episode scored {step.reward:g} ({', '.join(info.get('reward_sources', []))})."]
        errors = info.get("all_errors") or []
        if errors:
            parts.append("Tool call errors in this episode:\n" + "\n".join(errors))
        if step.observation is not None:
            parts.append(f"The last tool result was:\n{step.observation}")
        else:
            names = ", ".join(self.toolbox.names) or "none"
            parts.append(f"No tool was called (the tools offered: {names}).")
        return "\n\n".join(parts), "trl:episode"

    # -- helpers ----------------------------------------------------------------------------
    def _run_calls(self, calls: list[Any]) -> Turn:
        results = []
        for call in calls:
            if isinstance(call, MalformedCall):
                result = ToolResult("", {}, error=f"malformed tool call: {call.message}")
            else:
                result = self.toolbox.run(call, offered=self.toolbox.names)
            if result.unavailable:
                raise PeerError(result.error or "tool unavailable")
            results.append(result)
        self._results.extend(results)
        message = render_results(results)
        for result in results:
            content = result.output if result.ok else f"Error: {result.error}"
            self._completion.append({"role": "tool", "name": result.name, "content": content})
        errors = [f"- {call_label(i, r)}: {r.error}" for i, r in enumerate(results, start=1) if not r.ok]
        step = PeerStep(
            observation=message,
            done=False,
            info={"calls": [r.to_dict() for r in results], "errors": errors},
            environment=self.environment,
        )
        verdict: Verdict = "tool_error" if errors else "pass"
        feedback = self.feedback(step, verdict=verdict, calls=step.info["calls"])
        return Turn(0.0, feedback, message)

    def _finish(self) -> Turn:
        reward, sources = self._score()
        errors = [f"- {r.name or 'malformed call'}: {r.error}" for r in self._results if not r.ok]
        last = render_results([self._results[-1]]) if self._results else None
        step = PeerStep(
            observation=last,
            reward=reward,
            done=True,
            info={
                "calls": [r.to_dict() for r in self._results],
                "all_errors": errors,
                "reward_sources": sources,
            },
            environment=self.environment,
        )
        return Turn(reward, self.feedback(step, reward_sources=sources))

    def _score(self) -> tuple[float, list[str]]:
        """The rollout's reward, summed over the sources that scored it, as TRL does."""
        name = type(self.environment).__name__
        total, sources = 0.0, []
        if self.has_get_reward:
            try:
                value = self.environment.get_reward()
                if inspect.iscoroutine(value):
                    value = asyncio.run(value)
            except Exception as exc:
                raise PeerError(describe_exception(f"{name}.get_reward()", exc)) from exc
            if value is not None:
                total, sources = total + self._number(value, f"{name}.get_reward()"), [f"{name}.get_reward"]
        columns = {
            k: [v] for k, v in self._row.items() if k not in ("prompt", "completion", "completion_ids")
        }
        for func in self.reward_funcs:
            label = getattr(func, "__name__", repr(func))
            try:
                values = func(
                    prompts=[self._prompt],
                    completions=[list(self._completion)],
                    completion_ids=[None],
                    environments=[self.environment],
                    trainer_state=None,
                    log_extra=lambda *a, **k: None,
                    log_metric=lambda *a, **k: None,
                    **columns,
                )
                if inspect.iscoroutine(values):
                    values = asyncio.run(values)
                values = list(values)
            except Exception as exc:
                raise PeerError(describe_exception(f"reward function {label}", exc)) from exc
            if len(values) != 1:
                raise PeerError(f"reward function {label} returned {len(values)} rewards for 1 completion")
            value = values[0]
            if value is not None:
                total += self._number(value, f"reward function {label}")
                sources.append(label)
        if not sources:
            raise PeerError(f"no reward source scored this rollout of {name} (each returned None)")
        return total, sources

    @staticmethod
    def _number(value: Any, where: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PeerError(f"{where} returned {value!r}, expected a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise PeerError(f"{where} returned {value!r}, expected a finite number")
        return number


def from_spec(target: str, **kwargs: Any) -> TRLEnv:
    """``trl:<module:Class>`` (``sdpo_envs.interop.spec``)."""
    return TRLEnv(target, **kwargs)
