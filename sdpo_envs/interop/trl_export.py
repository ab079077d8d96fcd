"""Every sdpo environment as a TRL ``environment_factory`` class, for TRL's own ``GRPOTrainer``.

``trl_environment("sdpo/CodeExec-v0")`` returns a class that TRL 1.16's
``GRPOTrainer(environment_factory=...)`` uses unchanged: one instance per rollout, ``reset(**row)``
before generation, its public methods as the model's tools, ``get_reward()`` once the rollout
ends. What the class does with them (the export rule):

* **Tasks.** ``reset(**row)`` picks the task from the dataset row TRL passes: a ``task_index``
  column indexes the env's own task set (:func:`trl_dataset` builds such a dataset); a ``task``
  column holds a task row (a dict or its JSON text: the way for rows with a ``prompt`` field of
  their own, as CodeExec's); otherwise the columns beside the chat ``prompt`` are the task row
  itself; a row with only ``prompt`` (TRL's
  placeholder when no dataset is given) draws a task with the instance's seeded RNG (each
  instance its own: a GRPO group then mixes tasks, so prefer a dataset). It returns the env's
  prompt text (plus one sentence naming the answer tool) for TRL to append to the last message
  when that message is empty, and ``None`` when the row's prompt already has text. A system
  prompt of the env belongs in the dataset's prompt (:func:`trl_dataset` puts it there).
* **Tools.** Every environment gets ``submit``: ``submit(code)`` for code environments (those
  with ``judge_solution``; the code is fenced as the env expects), ``submit(answer)`` for the
  others. A tool environment (one with a ``toolbox``, as ``sdpo/ToolUse-v0``) also gets one
  method per tool, with the tool's own signature and docstring; each call is one env step
  written as the env's ``<tool_call>`` action, so argument checks, required tools and the turn
  limit are the env's. The tool's result (or, once the episode ends, the judge's feedback) is
  what the model reads next.
* **Reward and feedback.** ``get_reward()`` is the episode's return from the env's judge;
  ``None`` (TRL's "no reward") for a ``judge_error``; 0.0 with a ``format_error`` when the
  rollout ended without ``submit``. ``feedback`` (a :class:`~sdpo_envs.Feedback`), ``verdict``,
  ``feedback_text``, ``reward`` and ``messages`` are readable from the instance -- by a reward
  function that takes ``environments=``, or after training.
* ``max_submissions`` (default 1): with more, a failed ``submit`` of a single-turn env is
  answered with its feedback and the task starts again, so the model can use the feedback;
  the reward is the last submission's.

No TRL import is needed here: the class is plain Python, as TRL asks.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import datasets

from ..core import TextEnv
from ..env_factory import EnvSpec, make_env_factory
from ..feedback import Feedback

TASK_INDEX = "task_index"
TASK_COLUMN = "task"
ANSWER_TOOL = "submit"
_FENCE = re.compile(r"```")


def _no_submission(last: Feedback | None) -> Feedback:
    text = f"No final answer: the rollout ended without a call to the `{ANSWER_TOOL}` tool."
    if last is not None and not last.success:
        text += f" The last step's feedback: {last.text}"
    return Feedback(text, "format_error", details={"reason": "no_submission"})


class SDPOEnvironment:
    """Base of the classes :func:`trl_environment` builds; see the module docstring.

    Public *methods* of a subclass become the model's tools in TRL, so everything else here is a
    property or private.
    """

    _make: ClassVar[Callable[[], TextEnv]]
    _env_name: ClassVar[str] = "env"
    _seed: ClassVar[int | None] = None
    _max_submissions: ClassVar[int] = 1
    _instances: ClassVar[itertools.count]

    def __init__(self) -> None:
        self._env: TextEnv = self._make()
        if getattr(self._env, "toolbox", None) is not None and hasattr(self._env, "tools_in_prompt"):
            self._env.tools_in_prompt = False  # TRL renders the tool schemas through the chat template
        number = next(type(self)._instances)
        self._next_seed = None if self._seed is None else self._seed + number
        self._options: dict[str, Any] = {}
        self._submissions = 0
        self._clear()

    # -- TRL's protocol ---------------------------------------------------------------------
    def reset(self, **row: Any) -> str | None:
        """Start an episode on the task ``row`` names (see the module docstring)."""
        self._options = self._task_options(row)
        observation = self._start()
        self._submissions = 0
        prompt = row.get("prompt")
        last = prompt[-1] if isinstance(prompt, list) and prompt else None
        if isinstance(last, Mapping) and str(last.get("content") or "").strip():
            return None
        return f"{observation}\n\nGive your final answer by calling the `{ANSWER_TOOL}` tool."

    def get_reward(self) -> float | None:
        """The episode's reward from the environment's judge (``None`` for a judge error)."""
        feedback, reward = self._outcome()
        return None if feedback is not None and feedback.is_judge_error else reward

    # -- what reward functions and users read ------------------------------------------------
    # Reward functions run once the rollout is over, before ``get_reward``: an episode still open
    # then is one that ended without ``submit``, and these read as its outcome.
    @property
    def env(self) -> TextEnv:
        """The sdpo environment behind this instance."""
        return self._env

    @property
    def feedback(self) -> Feedback | None:
        """The judge's feedback on the episode (``None`` before ``reset``)."""
        return self._outcome()[0]

    @property
    def verdict(self) -> str | None:
        feedback = self.feedback
        return None if feedback is None else feedback.verdict

    @property
    def feedback_text(self) -> str:
        feedback = self.feedback
        return "" if feedback is None else feedback.text

    @property
    def reward(self) -> float | None:
        """The episode's reward (what ``get_reward`` returns)."""
        return self.get_reward()

    @property
    def messages(self) -> list[dict[str, str]]:
        """The episode's chat as the sdpo environment saw it."""
        return [dict(m) for m in self._env.messages]

    @property
    def submissions(self) -> int:
        return self._submissions

    # -- internals -----------------------------------------------------------------------------
    def _clear(self) -> None:
        self._feedback: Feedback | None = None
        self._return = 0.0
        self._episode_over = False
        self._started = False
        self._info: dict[str, Any] = {}

    def _outcome(self) -> tuple[Feedback | None, float | None]:
        if not self._started:
            return None, None
        if not self._episode_over:
            return _no_submission(self._feedback), 0.0
        return self._feedback, float(self._return)

    def _task_options(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if row.get(TASK_INDEX) is not None:
            return {"index": int(row[TASK_INDEX])}
        if row.get(TASK_COLUMN) is not None:
            task = row[TASK_COLUMN]
            task = json.loads(task) if isinstance(task, str) else task
            if not isinstance(task, Mapping):
                raise ValueError(f"column {TASK_COLUMN!r} must hold a task row (a dict or its JSON text)")
            return {"task": dict(task)}
        task = {k: v for k, v in row.items() if k != "prompt"}
        return {"task": task} if task else {}

    def _start(self) -> str:
        self._clear()
        seed, self._next_seed = self._next_seed, None  # seeded once; later draws continue the stream
        observation, _ = self._env.reset(seed=seed, options=dict(self._options) or None)
        if not self._options and self._env.task_index is not None:
            self._options = {"index": self._env.task_index}  # a retry keeps the drawn task
        self._started = True
        return observation

    def _step(self, action: str) -> str:
        """One env step; the text the model reads back."""
        if not self._started:
            return "No episode is running: the environment was not reset."
        if self._episode_over:
            verdict = None if self._feedback is None else self._feedback.verdict
            return f"The episode is over (verdict: {verdict}); nothing more is run. End your turn."
        observation, reward, terminated, truncated, info = self._env.step(action)
        self._info = info
        self._feedback = info["feedback"]
        self._return += float(reward)
        if not (terminated or truncated):
            return observation
        self._episode_over = True
        return self._feedback.text

    def _submit(self, action: str) -> str:
        if self._episode_over and self._retry_allowed():
            self._start()
        if not self._episode_over:
            self._submissions += 1
        text = self._step(action)
        if self._episode_over and self._retry_allowed():
            left = self._max_submissions - self._submissions
            text += f"\n\n({left} submission{'s' if left != 1 else ''} left.)"
        return text

    def _retry_allowed(self) -> bool:
        return (
            self._env.max_turns == 1
            and self._submissions < self._max_submissions
            and self._feedback is not None
            and not self._feedback.success
            and not self._feedback.is_judge_error
        )

    def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        payload = json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False, default=str)
        return self._step(f"<tool_call>{payload}</tool_call>")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._env_name} verdict={self.verdict!r}>"


class _AnswerSubmission(SDPOEnvironment):
    def submit(self, answer: str) -> str:
        """Submit your final answer; the environment's judge checks it and its verdict comes back.

        Args:
            answer: The final answer, written in the format the task asks for.
        """
        return self._submit(answer)


class _CodeSubmission(SDPOEnvironment):
    def submit(self, code: str) -> str:
        """Submit your solution; it is run against the task's tests and the verdict and feedback come back.

        Args:
            code: The complete Python solution (a Markdown code fence around it is optional).
        """
        return self._submit(code if _FENCE.search(code) else f"```python\n{code.rstrip()}\n```")


class _ToolSubmission(SDPOEnvironment):
    def submit(self, answer: str) -> str:
        """Give the final answer, once the tools have given you what you need; it is judged.

        Args:
            answer: The final answer alone, e.g. a number or a name.
        """
        return self._submit(f"<answer>{answer}</answer>")


def _tool_method(name: str, function: Callable[..., Any]) -> Callable[..., str]:
    """A method with ``function``'s name, signature and docstring that runs it as an env step."""

    def method(self: SDPOEnvironment, **arguments: Any) -> str:
        return self._call_tool(name, arguments)

    target = getattr(function, "__func__", function)  # the plain function: its module resolves the hints
    signature = inspect.signature(function)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()], return_annotation=str
    )
    method.__name__ = method.__qualname__ = name
    method.__doc__ = inspect.getdoc(function)
    method.__wrapped__ = target  # type: ignore[attr-defined]
    method.__annotations__ = {**getattr(target, "__annotations__", {}), "return": "str"}
    return method


def _class_name(env: EnvSpec) -> str:
    text = env if isinstance(env, str) else getattr(env, "__name__", type(env).__name__)
    words = re.split(r"[^0-9A-Za-z]+", str(text).split("/")[-1])
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "SDPOEnv"


def trl_environment(
    env: EnvSpec,
    *,
    seed: int | None = 0,
    max_submissions: int = 1,
    name: str | None = None,
    only_tools: Iterable[str] | None = None,
    **make_kwargs: Any,
) -> type[SDPOEnvironment]:
    """A TRL ``environment_factory`` class for the sdpo environment ``env`` (an id such as
    ``"sdpo/ToolUse-v0"``, an env instance or a factory; ``make_kwargs`` go to ``gymnasium.make``).

    ``seed``: instance *k* draws its tasks (when rows do not name them) from ``seed + k``;
    ``None`` leaves them unseeded. TRL logs the reward under the class's ``name`` (default from
    the id, e.g. ``ToolUseV0``). ``only_tools``: of a tool env's tools, only these become methods
    (shorter prompts when a task set needs few). See the module docstring for what the class does.
    """
    if max_submissions < 1:
        raise ValueError(f"max_submissions must be >= 1, got {max_submissions}")
    factory = make_env_factory(env, **make_kwargs)
    probe = factory()  # the tools of a tool env come from its toolbox
    try:
        toolbox = getattr(probe, "toolbox", None)
        if toolbox is not None:
            base: type[SDPOEnvironment] = _ToolSubmission
            chosen = toolbox.names if only_tools is None else list(only_tools)
            unknown = [tool for tool in chosen if tool not in toolbox]
            if unknown:
                raise ValueError(
                    f"only_tools names unknown tool(s) {unknown}; the env's tools: {toolbox.names}"
                )
            tools = {tool: toolbox[tool].function for tool in chosen}
        else:
            if only_tools is not None:
                raise ValueError(f"only_tools is for tool environments; {env!r} has no toolbox")
            base = _CodeSubmission if callable(getattr(probe, "judge_solution", None)) else _AnswerSubmission
            tools = {}
    finally:
        probe.close()
    clash = [
        tool
        for tool in tools
        if tool == ANSWER_TOOL or tool.startswith("_") or tool in ("reset", "get_reward")
    ]
    if clash:
        raise ValueError(
            f"tool name(s) {clash} clash with the exported class's own methods; rename the tool(s)"
        )
    namespace: dict[str, Any] = {tool: _tool_method(tool, fn) for tool, fn in tools.items()}
    namespace.update(
        _make=staticmethod(factory),
        _env_name=env if isinstance(env, str) else _class_name(env),
        _seed=seed,
        _max_submissions=max_submissions,
        _instances=itertools.count(),
        __doc__=f"TRL environment_factory class of the sdpo environment {env!r} (sdpo_envs.interop.trl_export).",
        __module__=__name__,
    )
    return type(name or _class_name(env), (base,), namespace)


def trl_dataset(environment: type[SDPOEnvironment], n: int | None = None) -> datasets.Dataset:
    """A ``train_dataset`` for TRL of the first ``n`` tasks (all of a finite set when ``None``):
    a ``task_index`` column and a ``prompt`` whose last message is empty (the env's system
    prompt, if any, before it), so each rollout's ``reset`` writes the task's prompt in."""
    probe = environment._make()
    try:
        tasks = probe.tasks
        if tasks is None:
            raise ValueError(f"{environment.__name__} has no task set; pass task rows as dataset columns")
        if n is None and not tasks.is_finite:
            raise ValueError(f"{environment.__name__}'s task set is procedural (endless): pass n")
        count = len(tasks) if n is None else n
        if not 0 < count <= len(tasks):
            raise ValueError(f"n must be in 1..{len(tasks)}, got {count}")
        system = [{"role": "system", "content": probe.system_prompt}] if probe.system_prompt else []
    finally:
        probe.close()
    prompt = [*system, {"role": "user", "content": ""}]
    return datasets.Dataset.from_dict({"prompt": [prompt] * count, TASK_INDEX: list(range(count))})
