"""The baselines of test-time discovery, sampled from the frozen initial model: best-of-k
(i.i.d. samples) and multi-turn retries (feedback appended after each failure, in a bounded
context window)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sdpo_envs.wrappers import DEFAULT_RETRY_TEMPLATE

from ...rollout.agent_loop import AgentLoop, EpisodeContext
from ...rollout.backends import sampling_generator
from ...rollout.generation import sampling_settings
from .spec import Attempt, DiscoverySpec, UnitResult, attempt_of

OMITTED_ATTEMPT = "[earlier attempt omitted to fit the context window]"


Messages = list[dict[str, Any]]


@dataclass
class RetryWindow:
    messages: Messages
    attempts_dropped: int
    feedback_dropped: int
    tokens: int


def fit_retry_window(
    prompt: Messages,
    history: Sequence[tuple[str, str]],
    count_tokens: Callable[[Messages], int],
    max_tokens: int,
    placeholder: str = OMITTED_ATTEMPT,
) -> RetryWindow:
    """The retry conversation, bounded to ``max_tokens``.

    ``history`` holds ``(attempt, feedback message)`` pairs, oldest first. Over the window,
    past attempts are replaced by ``placeholder`` oldest first (the turn stays, so roles
    still alternate); only when every attempt is gone are the oldest feedback turns dropped
    (with their placeholder), and the latest feedback is always kept. Feedback outlives
    attempts because it is the short, informative part of a failure.
    """

    def render(dropped_attempts: int, dropped_pairs: int) -> Messages:
        messages = [dict(m) for m in prompt]
        for i, (attempt, feedback) in enumerate(history):
            if i < dropped_pairs:
                continue
            text = placeholder if i < dropped_attempts else attempt
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": feedback}]
        return messages

    dropped_attempts = dropped_pairs = 0
    messages = render(0, 0)
    tokens = count_tokens(messages)
    while tokens > max_tokens:
        if dropped_attempts < len(history):
            dropped_attempts += 1
        elif dropped_pairs < len(history) - 1:
            dropped_pairs += 1
        else:
            break  # prompt + latest feedback alone exceed the window: nothing else may go
        messages = render(dropped_attempts, dropped_pairs)
        tokens = count_tokens(messages)
    return RetryWindow(messages, dropped_attempts, dropped_pairs, tokens)


def _prompt_ids(tokenizer: Any, messages: Messages, tools: Any = None) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )


def run_best_of_k(
    model: Any,
    tokenizer: Any,
    env_factory: Callable[[], Any],
    task_index: int,
    task_id: str,
    seed: int,
    spec: DiscoverySpec,
    *,
    batch_size: int = 16,
) -> UnitResult:
    """``spec.samples_per_seed`` i.i.d. samples from ``model`` on one question, in order."""

    start = time.monotonic()
    eos = sorted({tokenizer.eos_token_id} - {None})
    settings = sampling_settings(spec.temperature, use_vllm=spec.use_vllm)
    generator = sampling_generator(model, tokenizer, settings, eos, seed=seed)
    envs = [env_factory() for _ in range(min(batch_size, spec.samples_per_seed))]
    loop = AgentLoop(
        generator,
        tokenizer,
        max_completion_length=spec.max_completion_length,
        max_turns=max(1, getattr(envs[0], "max_turns", 1)),
        eos_token_ids=eos,
    )
    torch.manual_seed(seed)
    attempts: list[Attempt] = []
    first_text = None
    remaining = spec.samples_per_seed
    while remaining > 0:
        chunk = envs[: min(batch_size, remaining)]
        contexts, prompts = [], []
        for env in chunk:
            _, info = env.reset(options={"index": task_index})
            tools = None if getattr(env, "tools_in_prompt", False) else info.get("tools")
            contexts.append(EpisodeContext(env=env, messages=info["messages"], tools=tools))
            prompts.append(_prompt_ids(tokenizer, info["messages"], tools))
        for rollout in loop.run(prompts, contexts):
            attempts.append(attempt_of(rollout.feedback, rollout.env_reward))
            if attempts[-1].success and first_text is None:
                first_text = tokenizer.decode(rollout.completion_ids, skip_special_tokens=True)
        remaining -= len(chunk)
    return UnitResult(
        "best_of_k",
        task_id,
        task_index,
        seed,
        spec.budget,
        attempts,
        wall_s=time.monotonic() - start,
        first_success_text=first_text,
    )


def run_retries(
    model: Any,
    tokenizer: Any,
    env: Any,
    task_index: int,
    task_id: str,
    seed: int,
    spec: DiscoverySpec,
    *,
    template: str = DEFAULT_RETRY_TEMPLATE,
) -> UnitResult:
    """One retry conversation on one question; it ends at the first success or the budget."""

    if getattr(env, "max_turns", 1) > 1:
        raise ValueError(
            f"the retries baseline needs a single-turn env (one answer per attempt); "
            f"{type(env).__name__} has max_turns={env.max_turns}"
        )
    start = time.monotonic()
    eos = sorted({tokenizer.eos_token_id} - {None})
    settings = sampling_settings(spec.temperature, use_vllm=spec.use_vllm)
    generator = sampling_generator(model, tokenizer, settings, eos, seed=seed)
    torch.manual_seed(seed)
    _, info = env.reset(options={"index": task_index})
    prompt = info["messages"]
    history: list[tuple[str, str]] = []
    attempts: list[Attempt] = []
    most_dropped = most_feedback_dropped = max_tokens = 0
    first_text = None
    for _ in range(spec.budget):
        window = fit_retry_window(
            prompt, history, lambda m: len(_prompt_ids(tokenizer, m)), spec.retry_window_tokens
        )
        most_dropped = max(most_dropped, window.attempts_dropped)
        most_feedback_dropped = max(most_feedback_dropped, window.feedback_dropped)
        max_tokens = max(max_tokens, window.tokens)
        ids = generator.generate([_prompt_ids(tokenizer, window.messages)], spec.max_completion_length)[0]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        env.reset(options={"index": task_index})  # a fresh judgement of the same question
        _, reward, _, _, step_info = env.step(text)
        feedback = step_info["feedback"]
        attempts.append(attempt_of(feedback, reward))
        if feedback.success:
            first_text = text
            break  # the conversation has nothing left to discover
        history.append((text, template.format(feedback=feedback.text)))
    return UnitResult(
        "retries",
        task_id,
        task_index,
        seed,
        spec.budget,
        attempts,
        wall_s=time.monotonic() - start,
        first_success_text=first_text,
        extra={
            "max_attempts_dropped": most_dropped,
            "max_feedback_dropped": most_feedback_dropped,
            "max_prompt_tokens": max_tokens,
        },
    )
