"""``VerifiersEnv``: a classic ``verifiers`` environment (``vf.Environment``, as published
with a ``load_environment`` function) as a ``TextEnv``.

The verifiers rollout itself runs, one model turn per Gymnasium ``step`` (see
``verifiers_bridge``): ``SingleTurnEnv`` is one step, a ``MultiTurnEnv``'s ``env_response``
messages are the next observations (several are joined into one message), and its stop
conditions end the episode. ``ToolEnv`` tools are offered through the chat template
(``info["tools"]``) and called with Hermes ``<tool_call>{...}</tool_call>`` blocks.
When the rollout ends, the environment's rubric scores it: that score is the reward.

Feedback rule (``info["feedback_source"]`` names the part used):

* ``"verifiers:rubric"`` -- the rubric's per-function scores with their weights (metrics of weight 0
  included), the reward against the environment's ``pass_threshold``, and the parser's
  verdict: when the parser finds no answer, its expected format (``verdict format_error``);
* ``"verifiers:rubric+last_env_message"`` -- as above, plus the last environment message of a multi-turn
  rollout (its ``final_env_response`` when it set one);
* ``"verifiers:env_response"`` -- a turn that goes on (the environment's messages are the
  next observation);
* ``"feedback_fn"`` -- ``feedback_fn(step)`` returned the text; its ``PeerStep`` has the
  scored verifiers ``State`` as ``observation``, the rubric's reward, and ``info`` with
  ``metrics``, ``parsed_answer``, ``error`` and ``stop_condition``;
* ``"verifiers:error"`` -- the environment or a reward function raised, its rollout recorded an
  infrastructure error, or its reward is not a finite number: a ``judge_error``. A verifiers
  ``ToolError`` (a stop error the model's tool call caused) is ``tool_error`` instead.

``success`` is ``reward >= pass_threshold`` (verifiers' own pass criterion; ``success_threshold=``
overrides it). Not supported: group reward functions (they score a whole group of rollouts;
the rollout is a ``judge_error`` naming the assertion), the environment's sampling arguments
(the trainer's generation settings apply), native tool-call formats other than Hermes blocks.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import verifiers as vf

from ..core import Messages, Turn
from ..feedback import Verdict
from .peer_env import FeedbackFn, PeerEnv, PeerError, PeerStep, chat_prompt
from .verifiers_bridge import (
    Request,
    RolloutDriver,
    message_role,
    message_text,
    model_response,
    parse_tool_calls,
    record_reward_failures,
    tool_schemas,
)

DEFAULT_MAX_TURNS = 32  # for rollouts whose environment sets no turn limit
_loaded: dict[str, vf.Environment] = {}
_load_lock = threading.Lock()


def load_verifiers_env(env: Any, env_args: Mapping[str, Any] | None = None) -> vf.Environment:
    """A ``vf.Environment`` from an instance, a zero-argument factory, or an environment id
    (``vf.load_environment(id, **env_args)``: the module named like the id, ``-`` read as
    ``_``). Loaded ids are kept per process: a verifiers environment serves concurrent
    rollouts by design, and loading one registers signal handlers, which only the main
    thread may do."""
    if isinstance(env, vf.Environment):
        return env
    if isinstance(env, str):
        key = env + json.dumps(dict(env_args or {}), sort_keys=True, default=repr)
        with _load_lock:
            if key not in _loaded:
                _loaded[key] = vf.load_environment(env, **dict(env_args or {}))
            return _loaded[key]
    if callable(env):
        made = env(**dict(env_args or {}))
        if not isinstance(made, vf.Environment):
            raise TypeError(
                f"the verifiers factory returned {type(made).__name__}, expected a vf.Environment"
            )
        return made
    raise TypeError(f"env must be a vf.Environment, a factory or an environment id, got {type(env).__name__}")


class VerifiersEnv(PeerEnv):
    """A classic verifiers environment, turn by turn; see the module docstring.

    ``env``: a ``vf.Environment``, a factory of one, or an environment id for
    ``vf.load_environment`` (``env_args`` are its arguments). Tasks are the environment's
    dataset (``split="eval"``: its eval dataset) unless ``dataset=`` gives rows of the same
    shape (``prompt``, ``answer``, ``info``, ``example_id``).
    """

    peer_name = "verifiers"

    def __init__(
        self,
        env: str | vf.Environment | Callable[..., vf.Environment],
        *,
        env_args: Mapping[str, Any] | None = None,
        split: str = "train",
        dataset: Any = None,
        max_turns: int | None = None,
        feedback_fn: FeedbackFn | str | None = None,
        success_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        self.vf_env = load_verifiers_env(env, env_args)
        record_reward_failures(self.vf_env.rubric)  # here, not per rollout: rollouts run in many threads
        if (
            dataset is None
            and split == "train"
            and self.vf_env.dataset is None
            and self.vf_env.dataset_source is None
        ):
            raise ValueError(
                "the verifiers environment has no train dataset: pass split='eval' or dataset=..."
            )
        if dataset is None:
            dataset = self.vf_env.get_dataset() if split == "train" else self.vf_env.get_eval_dataset()
        peer_turns = int(getattr(self.vf_env, "max_turns", -1) or -1)
        threshold = self.vf_env.pass_threshold if success_threshold is None else success_threshold
        super().__init__(
            dataset,
            max_turns=max_turns or (peer_turns if peer_turns > 0 else DEFAULT_MAX_TURNS),
            feedback_fn=feedback_fn,
            success_threshold=threshold,
            **kwargs,
        )
        self.tools_in_prompt = False  # the chat template renders info["tools"]
        self.driver = RolloutDriver()
        self._request: Request | None = None
        self._env_messages: list[str] = []

    # -- tasks --------------------------------------------------------------------------------
    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        prompt = chat_prompt(task)
        return {**task, "prompt": prompt, "example_id": task.get("example_id", 0)}

    def task_id(self, task: dict[str, Any], index: int | None) -> str:
        return f"{self.vf_env.env_id or 'verifiers'}/{task.get('example_id', index)}"

    def peer_reset(self, task: Mapping[str, Any]) -> Messages:
        self._env_messages = []
        self._request = self.driver.start(self.vf_env, dict(task))
        if self._request is None:
            raise PeerError(
                f"the verifiers rollout ended before the first model turn ({self._state_error()})"
            )
        return [{"role": message_role(m), "content": message_text(m)} for m in self._request.prompt]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        observation, info = super().reset(seed=seed, options=options)
        tools = tool_schemas(self._tool_defs())
        if tools:
            info["tools"] = tools
        return observation, info

    def _tool_defs(self) -> list[Any]:
        state = self.driver.live_state
        defs = state.get("tool_defs") if state is not None else None
        return list(defs if defs is not None else (self.vf_env.tool_defs or []))

    # -- one model turn ------------------------------------------------------------------------
    def peer_step(self, action: str) -> Turn:
        if self._request is None:
            raise PeerError("the verifiers rollout is not waiting for a model turn")
        seen = len(self._request.prompt)
        content, calls = parse_tool_calls(action) if self._tool_defs() else (action, [])
        self._request = self.driver.answer(model_response(content, calls))
        if self._request is not None and self.turn < self.max_turns:
            new = self._request.prompt[seen + 1 :]  # what the environment added after the model's message
            text = "\n\n".join(message_text(m) for m in new)
            self.observation_role = "tool" if new and all(message_role(m) == "tool" for m in new) else "user"
            self._env_messages.append(text)
            step = PeerStep(observation=new, done=False, environment=self.vf_env)
            return Turn(0.0, self.feedback(step), text)
        if (
            self._request is not None
        ):  # our turn limit: end the rollout as verifiers' own would, then score it
            self._request = None
            self.driver.stop_and_score(self.vf_env)
        return self._scored()

    def _state_error(self) -> str:
        state = self.driver.state
        error = state.get("error") if state is not None else None
        return "no error recorded" if error is None else f"{type(error).__name__}: {error}"

    def _scored(self) -> Turn:
        state = self.driver.state
        if state is None:
            raise PeerError("the verifiers rollout finished without a state")
        error = state.get("error")
        if error is not None and not isinstance(error, vf.ToolError):
            raise PeerError(f"the verifiers rollout recorded {type(error).__name__}: {error}")
        if self.driver.failed_reward_functions:
            raise PeerError(
                "verifiers reward function(s) raised: " + "; ".join(self.driver.failed_reward_functions)
            )
        reward = state.get("reward")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise PeerError(f"the verifiers rubric's reward is {reward!r}, not a finite number")
        metrics = dict(state.get("metrics") or {})
        answer = _parsed_answer(self.vf_env.parser, state.get("completion") or [])
        info = {
            "metrics": metrics,
            "parsed_answer": answer,
            "error": error,
            "stop_condition": state.get("stop_condition"),
        }
        step = PeerStep(
            observation=state, reward=float(reward), done=True, info=info, environment=self.vf_env
        )
        verdict = self._verdict(state, float(reward), answer, error)
        feedback = self.feedback(
            step,
            verdict=verdict,
            metrics=metrics,
            reward=float(reward),
            stop_condition=info["stop_condition"],
        )
        return Turn(float(reward), feedback)

    def _verdict(self, state: Any, reward: float, answer: str | None, error: Any) -> Verdict:
        if state.get("timed_out"):
            return "time_limit"
        if error is not None:
            return "tool_error"
        if reward >= self.success_threshold:
            return "pass"
        return "format_error" if answer is None else "wrong_answer"

    # -- the feedback rule ----------------------------------------------------------------------
    def harvest(self, step: PeerStep) -> tuple[str, str]:
        if not step.done:
            return "The environment answered; the rollout goes on.", "verifiers:env_response"
        state, info = step.observation, step.info
        rubric = self.vf_env.rubric
        weights = dict(zip(rubric._get_reward_func_names(), rubric._get_reward_weights()))
        scores = "; ".join(
            f"{name} = {value:.3g}" + (f" (weight {weights[name]:g})" if weights.get(name) else " (metric)")
            for name, value in info["metrics"].items()
        )
        lines = [
            f"Score {step.reward:.3g} (pass threshold {self.success_threshold:g}). Rubric: {scores or 'no functions'}."
        ]
        if info["parsed_answer"] is None:
            expected = getattr(self.vf_env.parser, "get_format_str", None)
            hint = f" Expected format:\n{expected()}" if callable(expected) else ""
            lines.append(
                f"The parser ({type(self.vf_env.parser).__name__}) found no answer in the completion.{hint}"
            )
        if info["error"] is not None:
            lines.append(f"The rollout stopped on a tool error: {info['error']}")
        if state.get("timed_out"):
            lines.append(f"The rollout ran past the environment's timeout ({self.vf_env.timeout_seconds} s).")
        final = state.get("final_env_response")
        last = "\n\n".join(message_text(m) for m in final) if final else (self._env_messages or [""])[-1]
        if last:
            lines.append(f"Last environment message:\n{last}")
        return "\n".join(lines), "verifiers:rubric+last_env_message" if last else "verifiers:rubric"

    def close(self) -> None:
        self.driver.close()
        super().close()


def _parsed_answer(parser: Any, completion: Any) -> str | None:
    try:
        answer = parser.parse_answer(completion)
    except Exception:  # a parser that cannot read the completion found no answer in it
        return None
    return None if answer is None or (isinstance(answer, str) and not answer.strip()) else str(answer)


def from_spec(target: str, **kwargs: Any) -> VerifiersEnv:
    """``verifiers:<env id>``: the environment ``vf.load_environment(<env id>)`` loads (an
    installed environment package, or any importable module with a ``load_environment``);
    ``env_args=`` are its arguments, the other keywords ``VerifiersEnv``'s."""
    return VerifiersEnv(target, **kwargs)


__all__ = ["VerifiersEnv", "from_spec", "load_verifiers_env"]
