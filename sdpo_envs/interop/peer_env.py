"""``PeerEnv``: the shared base of the inbound adapters -- another library's environment (a
TRL ``environment_factory`` class, an OpenEnv environment or server, a verifiers, GEM or
SkyRL-gym env) wrapped as a :class:`~sdpo_envs.TextEnv`.

The contract every adapter keeps:

* **Feedback.** Each step of the peer is described to the adapter as a :class:`PeerStep`
  (the peer's own observation object, its reward, done flag and info/metadata, and the peer
  instance). The adapter's *harvesting rule* (:meth:`PeerEnv.harvest`, written in each
  adapter's docstring) turns it into feedback text; a user's ``feedback_fn(step) -> str | None``
  overrides the rule (``None`` falls back to it). ``info["feedback_source"]`` (and
  ``Feedback.details["feedback_source"]``) says where the text came from: ``"feedback_fn"`` or
  the rule's own description (e.g. ``"openenv:observation.stdout,stderr"``).
* **Faults of the peer are judge errors.** A peer that raises in reset, step or its reward, an
  observation that is malformed (no ``done``, a reward that is not a number), a server that
  does not answer: the step's verdict is ``judge_error`` (left out of the loss by the trainers,
  never a reward of 0 for the policy), and ``Feedback.details["reason"]`` says what failed and
  where. A reset failure does not raise: the episode starts on the task's own prompt and its
  first step is that judge error, so one broken episode never stops a training run.
* **Fresh copies.** ``copy.deepcopy`` of an adapter builds a new one from its constructor
  arguments (a new peer instance, a new server session) rather than copying live peer state;
  ``make_env_factory(adapter)`` relies on it to give each rollout its own peer.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..core import Messages, TextEnv, Turn
from ..feedback import Feedback, Verdict

FEEDBACK_FN_SOURCE = "feedback_fn"


@dataclass(frozen=True)
class PeerStep:
    """One answer of a peer environment, as a harvesting rule or a ``feedback_fn`` sees it."""

    observation: Any  # the peer's own object: an OpenEnv Observation, a text, a dict, ...
    reward: float | None = None
    done: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)  # the peer's metadata / info
    environment: Any = None  # the peer instance (or client) that answered


FeedbackFn = Callable[[PeerStep], "str | None"]


class PeerError(Exception):
    """The peer environment or its server failed (raised, answered something malformed, did
    not answer): the judge's fault, never the policy's. The message says what and where."""


def load_object(path: str, what: str = "object") -> Any:
    """The object a ``"package.module:attribute"`` path names; a clear ``ValueError`` otherwise."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{what} must be given as 'module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} for {what} {path!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r} ({what} {path!r})")
        target = getattr(target, part)
    return target


def resolve_feedback_fn(feedback_fn: FeedbackFn | str | None) -> FeedbackFn | None:
    """``feedback_fn`` as a callable (a ``"module:function"`` string is imported, for the CLI)."""
    if feedback_fn is None or callable(feedback_fn):
        return feedback_fn
    if isinstance(feedback_fn, str):
        loaded = load_object(feedback_fn, "feedback_fn")
        if not callable(loaded):
            raise TypeError(f"feedback_fn {feedback_fn!r} is not callable")
        return loaded
    raise TypeError(f"feedback_fn must be a callable or a 'module:function' string, got {feedback_fn!r}")


def chat_prompt(task: Mapping[str, Any]) -> Messages:
    """A task row's ``prompt`` as chat messages (a string is one user message), or
    ``ValueError`` naming the field."""
    prompt = task.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if (
        not isinstance(prompt, list)
        or not prompt
        or not all(isinstance(m, Mapping) and "role" in m and "content" in m for m in prompt)
    ):
        raise ValueError(
            "task field 'prompt' must be a non-empty list of chat messages ({'role', 'content'})"
        )
    return prompt


def describe_exception(where: str, exc: BaseException) -> str:
    return f"{where} raised {type(exc).__name__}: {exc}"


class PeerEnv(TextEnv):
    """Base of the inbound adapters; see the module docstring for the contract.

    A subclass implements:

    * ``peer_reset(task) -> Messages`` -- reset the peer on a task row and return the prompt;
    * ``peer_step(action) -> Turn`` -- send one action, build the ``Turn`` (its feedback
      through :meth:`feedback`); raise :class:`PeerError` for a peer fault;
    * ``harvest(step) -> (text, source)`` -- the default feedback rule.

    Arguments of this base: ``feedback_fn`` (overrides the rule; a callable or
    ``"module:function"``), ``success_threshold`` (a final reward at or above it is a ``pass``).
    """

    peer_name: ClassVar[str] = "peer"  # the standard's name: "openenv", "trl", ...
    _init_arguments: tuple[tuple[Any, ...], dict[str, Any]]

    def __init__(
        self,
        dataset: Any = None,
        *,
        feedback_fn: FeedbackFn | str | None = None,
        success_threshold: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.feedback_fn = resolve_feedback_fn(feedback_fn)
        self.success_threshold = float(success_threshold)
        self._reset_error: str | None = None
        self._reset_traceback = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Record each adapter's constructor arguments so a copy can be built fresh (__deepcopy__).
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        def recording_init(self: PeerEnv, *args: Any, __original: Any = init, **kw: Any) -> None:
            if not hasattr(self, "_init_arguments"):  # the outermost subclass's call is the one to repeat
                self._init_arguments = (args, dict(kw))
            __original(self, *args, **kw)

        recording_init.__doc__ = init.__doc__
        recording_init.__wrapped__ = init  # type: ignore[attr-defined]  # inspect.signature sees the real one
        cls.__init__ = recording_init  # type: ignore[method-assign]

    def __deepcopy__(self, memo: dict[int, Any]) -> PeerEnv:
        args, kwargs = getattr(self, "_init_arguments", ((), {}))
        return type(self)(*args, **kwargs)

    # -- to implement ---------------------------------------------------------------------
    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        raise NotImplementedError

    def peer_step(self, action: str) -> Turn:
        raise NotImplementedError

    def harvest(self, step: PeerStep) -> tuple[str, str]:
        """The adapter's default feedback rule: ``(text, source)`` for one peer step."""
        raise NotImplementedError

    def fallback_messages(self, task: Mapping[str, Any]) -> Messages:
        """The prompt of an episode whose peer failed to reset (its first step is a judge error)."""
        prompt = task.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            return [dict(m) for m in prompt]
        if isinstance(prompt, str) and prompt.strip():
            return [{"role": "user", "content": prompt}]
        return [{"role": "user", "content": "(the environment failed to start)"}]

    # -- provided ---------------------------------------------------------------------------
    def feedback(
        self, step: PeerStep, *, verdict: Verdict | None = None, final: bool | None = None, **details: Any
    ) -> Feedback:
        """The feedback of one peer step: ``feedback_fn``'s text, else the harvesting rule's.

        The verdict, unless given: ``pass`` (with success) when the episode ends here (``final``,
        by default ``step.done``) with a reward of at least ``success_threshold``;
        ``wrong_answer`` when it ends below it; ``pass`` without success while it goes on.
        A ``feedback_fn`` that raises or returns a non-string is a judge error (its fault).
        """
        final = step.done if final is None else final
        text, source = None, None
        if self.feedback_fn is not None:
            try:
                custom = self.feedback_fn(step)
            except Exception as exc:
                raise PeerError(describe_exception("feedback_fn", exc)) from exc
            if custom is not None:
                if not isinstance(custom, str):
                    raise PeerError(f"feedback_fn returned {type(custom).__name__}, expected str or None")
                text, source = custom, FEEDBACK_FN_SOURCE
        if text is None:
            text, source = self.harvest(step)
        success = False
        if verdict is None:
            if final:
                success = step.reward is not None and step.reward >= self.success_threshold
                verdict = "pass" if success else "wrong_answer"
            else:
                verdict = "pass"
        else:
            success = verdict == "pass" and final
        return Feedback(text, verdict, success=success, details={**details, "feedback_source": source})

    def judge_error_turn(self, reason: str, **details: Any) -> Turn:
        """A step the peer could not answer: ``judge_error``, reward 0, the episode ends."""
        return Turn(
            0.0,
            Feedback.judge_error(reason, feedback_source=f"{self.peer_name}:error", **details),
        )

    def build_messages(self, task: Mapping[str, Any]) -> Messages:
        self._reset_error = None
        try:
            return self.peer_reset(task)
        except Exception as exc:  # a broken peer must not stop training: its episode is a judge error
            self._reset_error = str(exc) if isinstance(exc, PeerError) else describe_exception("reset", exc)
            self._reset_traceback = traceback.format_exc(limit=8)
            return self.fallback_messages(task)

    def respond(self, action: str) -> Turn:
        if self._reset_error is not None:
            return self.judge_error_turn(self._reset_error, traceback=self._reset_traceback)
        try:
            return self.peer_step(action)
        except PeerError as exc:
            return self.judge_error_turn(str(exc))
        except Exception as exc:
            return self.judge_error_turn(
                describe_exception("step", exc), traceback=traceback.format_exc(limit=8)
            )

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = super().step(action)
        info["feedback_source"] = info["feedback"].details.get("feedback_source")
        return observation, reward, terminated, truncated, info
