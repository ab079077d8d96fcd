"""The agent loop: sample completions, step each through its own environment, repeat for
multi-turn episodes.

Trajectories are token-exact: sampled tokens are kept as sampled and the conversation is
never re-tokenised. Environment tokens (tool results, retry feedback) are appended with a
loss mask of 0, so only the policy's own tokens are trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdpo_envs import Feedback, TextEnv, batch_step
from sdpo_envs.executors import Executor

from .generation import GenerationBackend
from .phase_times import PhaseTimes

BUDGET_EXHAUSTED = Feedback(
    text="The answer was cut off: the completion-length budget ran out before the episode ended.",
    verdict="format_error",
)


@dataclass
class Rollout:
    """One episode: prompt tokens, completion tokens with their loss mask, and the verdict."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    completion_mask: list[int] = field(default_factory=list)  # 1 = sampled by the policy
    env_reward: float | None = None
    feedback: Feedback | None = None
    turns: int = 0
    ended_with_eos: bool = False

    def extend(self, ids: Sequence[int], sampled: bool) -> None:
        self.completion_ids.extend(ids)
        self.completion_mask.extend([1 if sampled else 0] * len(ids))


@dataclass
class EpisodeContext:
    """What an env said at reset: the chat prompt and the tools it offers."""

    env: TextEnv
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None


def observation_tokens(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    template_kwargs: dict[str, Any],
) -> list[int]:
    """Tokens that follow the policy's last turn: template glue, the env's new message, and
    the generation prompt for the next assistant turn.

    Rendered as the difference between the conversation with and without that message, so
    earlier tokens are never re-tokenised.
    """
    before = tokenizer.apply_chat_template(messages[:-1], tools=tools, tokenize=False, **template_kwargs)
    after = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=True, **template_kwargs
    )
    if not after.startswith(before):
        raise ValueError(
            "the chat template re-renders earlier turns; multi-turn rollouts need a prefix-stable template"
        )
    eos_text = tokenizer.eos_token or ""
    glue = before[before.rfind(eos_text) + len(eos_text) :] if eos_text and eos_text in before else ""
    ids: list[int] = tokenizer(glue + after[len(before) :], add_special_tokens=False)["input_ids"]
    return ids


class AgentLoop:
    """Run episodes for a batch of prompts; ``contexts`` is None when rewards come from
    reward functions only (a single generation per rollout, no env)."""

    def __init__(
        self,
        generator: GenerationBackend,
        tokenizer: Any,
        *,
        max_completion_length: int,
        max_turns: int = 1,
        eos_token_ids: Sequence[int] = (),
        judge_workers: int | None = None,
        judge_timeout_s: float | None = None,
        executor: Executor | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        decode: Callable[[list[int]], str] | None = None,
        phase_times: PhaseTimes | None = None,
    ) -> None:
        self.generator = generator
        self.phase_times = phase_times or PhaseTimes()
        self.tokenizer = tokenizer
        self.max_completion_length = max_completion_length
        self.max_turns = max_turns
        self.eos_ids = set(eos_token_ids)
        self.judge_workers = judge_workers
        self.judge_timeout_s = judge_timeout_s
        self.executor = executor  # where env steps run; None: a thread pool of judge_workers
        self.template_kwargs = dict(chat_template_kwargs or {})
        self.decode = decode or (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))

    def run(self, prompt_ids: list[list[int]], contexts: list[EpisodeContext] | None) -> list[Rollout]:
        rollouts = [Rollout(prompt_ids=list(p)) for p in prompt_ids]
        active = list(range(len(rollouts)))
        for _turn in range(self.max_turns if contexts is not None else 1):
            if not active:
                break
            self._sample_turn([rollouts[i] for i in active])
            if contexts is None:
                break
            active = self._step_envs(rollouts, contexts, active)
        for i in active:  # episodes still running when the turn limit hit
            rollouts[i].feedback = rollouts[i].feedback or BUDGET_EXHAUSTED
        return rollouts

    def _sample_turn(self, batch: list[Rollout]) -> None:
        budgets = [self.max_completion_length - len(r.completion_ids) for r in batch]
        contexts = [r.prompt_ids + r.completion_ids for r in batch]
        with self.phase_times.measure("generate"):
            sampled = self.generator.generate(contexts, max(budgets))
        for rollout, ids, budget in zip(batch, sampled, budgets):
            ids = ids[:budget]
            rollout.extend(ids, sampled=True)
            rollout.turns += 1
            rollout.ended_with_eos = bool(ids) and ids[-1] in self.eos_ids

    def _step_envs(
        self, rollouts: list[Rollout], contexts: list[EpisodeContext], active: list[int]
    ) -> list[int]:
        envs = [contexts[i].env for i in active]
        texts = [self.decode(self._last_turn_ids(rollouts[i])) for i in active]
        with self.phase_times.measure("judge"):
            results = batch_step(
                envs,
                texts,
                max_workers=self.judge_workers,
                timeout_s=self.judge_timeout_s,
                executor=self.executor,
            )
        still_running = []
        for i, result in zip(active, results):
            rollout = rollouts[i]
            rollout.env_reward = result.reward
            rollout.feedback = result.info["feedback"]
            if result.terminated or result.truncated or rollout.feedback.is_judge_error:
                continue
            tokens = self._continuation(rollout, contexts[i], result.info)
            if tokens is None:
                rollout.env_reward, rollout.feedback = 0.0, BUDGET_EXHAUSTED
                continue
            rollout.extend(tokens, sampled=False)
            still_running.append(i)
        return still_running

    def _continuation(self, rollout: Rollout, ctx: EpisodeContext, info: dict[str, Any]) -> list[int] | None:
        remaining = self.max_completion_length - len(rollout.completion_ids)
        if not rollout.ended_with_eos or remaining <= 1:
            return None
        tokens = observation_tokens(self.tokenizer, info["messages"], ctx.tools, self.template_kwargs)
        return tokens if len(tokens) < remaining else None

    @staticmethod
    def _last_turn_ids(rollout: Rollout) -> list[int]:
        """The policy's tokens since the last environment tokens."""
        mask = rollout.completion_mask
        start = len(mask)
        while start > 0 and mask[start - 1] == 1:
            start -= 1
        return rollout.completion_ids[start:]
