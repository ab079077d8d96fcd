"""``TextEnv``: a Gymnasium environment whose observations and actions are text."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym

from .feedback import DEFAULT_MAX_FEEDBACK_CHARS, Feedback, bound_text
from .judge_backends import check_judge_backend
from .spaces import TextSpace
from .tasks import Row, TaskSource, load_tasks

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class Turn:
    """What an environment answers to one action."""

    reward: float
    feedback: Feedback
    next_observation: str | None = None  # None ends the episode

    @property
    def done(self) -> bool:
        return self.next_observation is None


class TextEnv(gym.Env[str, str]):
    """Base class of the verifiable text environments.

    A subclass supplies its tasks and two methods:

    * ``build_messages(task) -> list[{"role", "content"}]`` -- the chat prompt;
    * ``judge(task, action) -> (reward, Feedback)`` -- score a final answer.

    Multi-turn environments override ``respond(action) -> Turn`` instead of ``judge``.
    Any exception raised by a subclass while judging becomes a ``judge_error`` verdict:
    a broken environment never stops a training run.

    >>> from sdpo_envs import Feedback, TextEnv
    >>> class Reverse(TextEnv):
    ...     default_dataset = [{"word": "policy"}]
    ...     def build_messages(self, task):
    ...         return [{"role": "user", "content": f"Reverse '{task['word']}'."}]
    ...     def judge(self, task, action):
    ...         if action.strip() == task["word"][::-1]:
    ...             return 1.0, Feedback.passed()
    ...         return 0.0, Feedback(f"Expected the reversal of {task['word']!r}.", "wrong_answer")
    >>> env = Reverse()
    >>> observation, info = env.reset(seed=0)
    >>> observation, info["messages"][0]["role"]
    ("Reverse 'policy'.", 'user')
    >>> _, reward, terminated, truncated, info = env.step("policy")
    >>> reward, terminated, info["feedback"].verdict, info["feedback"].text
    (0.0, True, 'wrong_answer', "Expected the reversal of 'policy'.")
    >>> env.reset(seed=0)[0] and env.step("ycilop")[1]
    1.0
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    builtin_datasets: ClassVar[Mapping[str, Callable[..., TaskSource]]] = {}
    default_dataset: ClassVar[str | None] = None

    def __init__(
        self,
        dataset: Any = None,
        *,
        max_turns: int = 1,
        max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS,
        system_prompt: str | None = None,
        render_mode: str | None = None,
        dataset_kwargs: Mapping[str, Any] | None = None,
        judge_backend: str = "local",
        ray_address: str | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if max_feedback_chars < 64:
            raise ValueError(f"max_feedback_chars must be >= 64, got {max_feedback_chars}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        check_judge_backend(judge_backend, ray_address)
        if dataset is None:
            dataset = self.default_dataset
        self.tasks: TaskSource | None = (
            None if dataset is None else load_tasks(dataset, self.builtin_datasets, **(dataset_kwargs or {}))
        )
        self.max_turns = max_turns
        self.max_feedback_chars = max_feedback_chars
        self.system_prompt = system_prompt
        self.render_mode = render_mode
        # Where sdpo_envs.batch_step, the trainers and the jobs step this env (executor_for);
        # env.step() itself always judges here.
        self.judge_backend = judge_backend
        self.ray_address = ray_address
        self.observation_space = TextSpace()
        self.action_space = TextSpace()
        self.task: Row | None = None
        self.task_index: int | None = None
        self.turn = 0
        self.messages: Messages = []
        self._done = True
        self._last_feedback: Feedback | None = None

    # -- to implement -------------------------------------------------------------------
    def build_messages(self, task: Row) -> Messages:
        """The chat prompt for ``task`` (without any system prompt)."""
        raise NotImplementedError

    def judge(self, task: Row, action: str) -> tuple[float, Feedback]:
        """Score a final answer; single-turn environments implement this."""
        raise NotImplementedError

    def oracle_actions(self, task: Row) -> list[str]:
        """A perfect player's actions for ``task`` (one per turn): demonstrations for warm
        starts, and a self-test of the task set. Environments override this."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle")

    def task_id(self, task: Row, index: int | None) -> str:
        for key in ("task_id", "id", "question_id"):
            if key in task and task[key] is not None:
                return str(task[key])
        return f"{getattr(self.tasks, 'name', 'task')}/{index}"

    def respond(self, action: str) -> Turn:
        """Answer one action. Default: judge it as the final answer."""
        assert self.task is not None
        reward, feedback = self.judge(self.task, action)
        return Turn(reward=float(reward), feedback=feedback)

    # -- Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
            self.observation_space.seed(seed)
        options = dict(options or {})
        unknown = set(options) - {"task", "index"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; supported: 'task', 'index'")
        if "task" in options:
            task, index = self.validate_task(dict(options["task"])), None
        elif "index" in options:
            index = int(options["index"])
            task = self.validate_task(self._require_tasks()[index])
        else:
            index, task = self._require_tasks().draw(self.np_random)
            task = self.validate_task(task)
        self.task, self.task_index, self.turn, self._done = task, index, 0, False
        self._last_feedback = None
        prompt = self.build_messages(task)
        if self.system_prompt:
            prompt = [{"role": "system", "content": self.system_prompt}, *prompt]
        self.messages = [dict(m) for m in prompt]
        observation = self.messages[-1]["content"]
        info = {"messages": [dict(m) for m in self.messages], "task_id": self.task_id(task, index)}
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._done or self.task is None:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the model's text), got {type(action).__name__}")
        self.turn += 1
        self.messages.append({"role": "assistant", "content": action})
        turn = self._safe_respond(action)
        feedback = self._bounded(turn.feedback)
        self._last_feedback = feedback
        terminated = turn.done
        truncated = not terminated and self.turn >= self.max_turns
        observation = ""
        if not terminated:
            observation = turn.next_observation or ""
            self.messages.append({"role": self.observation_role, "content": observation})
        self._done = terminated or truncated
        info = {
            "feedback": feedback,
            "success": feedback.success,
            "verdict": feedback.verdict,
            "task_id": self.task_id(self.task, self.task_index),
            "turn": self.turn,
            "messages": [dict(m) for m in self.messages],
        }
        return observation, float(turn.reward), terminated, truncated, info

    observation_role = "user"

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = [f"[{m['role']}] {m['content']}" for m in self.messages]
        if self._last_feedback is not None:
            lines.append(f"[verdict] {self._last_feedback.verdict}")
        return "\n".join(lines)

    # -- helpers ----------------------------------------------------------------------------
    def validate_task(self, task: Row) -> Row:
        """Check a task row has what this env needs; raise ``ValueError`` naming the field."""
        return task

    def _require_tasks(self) -> TaskSource:
        if self.tasks is None:
            raise ValueError(
                f"{type(self).__name__} has no task set: pass dataset=... or reset(options={{'task': row}})"
            )
        return self.tasks

    def _bounded(self, feedback: Feedback) -> Feedback:
        if len(feedback.text) <= self.max_feedback_chars:
            return feedback
        return Feedback(
            text=bound_text(feedback.text, self.max_feedback_chars),
            verdict=feedback.verdict,
            success=feedback.success,
            details=feedback.details,
        )

    def _safe_respond(self, action: str) -> Turn:
        try:
            turn = self.respond(action)
            if not isinstance(turn, Turn) or not isinstance(turn.feedback, Feedback):
                raise TypeError(f"respond() returned {type(turn).__name__}, expected Turn with Feedback")
            float(turn.reward)
            return turn
        except Exception as exc:  # an env bug must not kill a training run
            logger.warning("environment %s failed while judging: %r", type(self).__name__, exc)
            return Turn(
                reward=0.0,
                feedback=Feedback.judge_error(
                    f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8)
                ),
            )
