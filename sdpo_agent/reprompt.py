"""Teacher reprompts for SDPO: which rollouts get a teacher context, and what it says.

`build_teacher_messages` decides, per sample, whether a successful sibling's completion
(a demonstration) and/or environment feedback is shown to the teacher, and writes the
teacher prompt (docs/algorithm.md, "Teacher reprompts", steps 1–8). `tokenize_teacher_prompts`
turns those prompts into the teacher's input ids (steps 7 and 9).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .config import RepromptSettings, minimum_check, positive_check, raise_first_failure

Message = Mapping[str, Any]
Prompt = str | Sequence[Message]

_THINK_SPAN = re.compile(r"<think>.*?</think>", flags=re.DOTALL)


def remove_thinking(text: str) -> str:
    """Delete every (non-greedy) <think>…</think> span, then strip surrounding whitespace."""
    return _THINK_SPAN.sub("", text).strip()


def _is_success(reward: Any, threshold: float) -> bool:
    # None and NaN mark a missing reward: never a success (NaN >= x is already False).
    if reward is None:
        return False
    value = float(reward)
    return not math.isnan(value) and value >= threshold


def _has_text(feedback: Any) -> bool:
    return isinstance(feedback, str) and feedback.strip() != ""


def _is_chat(prompt: Any) -> bool:
    return not isinstance(prompt, str) and isinstance(prompt, Sequence)


def last_user_text(messages: Sequence[Message]) -> str:
    """Text of the final message, which must be a user turn (list content: text parts joined by spaces)."""
    if not messages:
        raise ValueError("a chat prompt needs at least one message")
    last = messages[-1]
    role = last.get("role")
    if role != "user":
        raise ValueError(
            "teacher reprompts need the conversation to end with a user turn, but the last message "
            f"has role {role!r}; prompts ending with assistant prefills or tool turns are not supported"
        )
    content = last.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


def _to_list(values: Any) -> list[Any]:
    if isinstance(values, Tensor):
        return values.detach().cpu().tolist()
    return list(values)


def build_teacher_messages(
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    rewards: Sequence[float | None] | Tensor,
    feedbacks: Sequence[str | None] | None,
    *,
    num_generations: int,
    args: RepromptSettings,
    per_rollout_feedback: bool = False,
) -> tuple[list[Prompt], list[float]]:
    """Teacher prompt (before templating/tokenisation) and self-distillation mask per sample.

    Samples come in consecutive groups of `num_generations` sharing a prompt. For sample i:
      1. candidates = siblings j with reward_j ≥ threshold (i itself excluded when
         `dont_reprompt_on_self_success`); none when `use_successful_as_teacher` is False.
         A reward of None/NaN is never a success.
      2. demonstration = completions[lowest-index candidate] (a lone success gets none);
         with `remove_thinking_from_demonstration`, `remove_thinking` is applied.
      3. feedback is used iff `include_environment_feedback`, it has non-whitespace text, and
         (not `environment_feedback_only_without_solution` or there is no demonstration).
         With `per_rollout_feedback=True` (feedback is each rollout's own environment
         verdict rather than the row's shared `privileged_context`), a successful sample
         has no feedback to give.
      4. mask_i = 1.0 iff a demonstration or feedback is used, else 0.0 and the original
         prompt is kept unchanged.
      5. reprompt = reprompt_template.format(prompt=P, solution=solution, feedback=feedback),
         solution/feedback from their templates or "" when unused; braces inside the
         substituted texts are never re-interpreted.
      6. text prompt: the teacher prompt is the reprompt (P = the prompt). Chat prompt: the
         last message must be a user turn (else ValueError), P is its text, and the teacher
         messages are the earlier messages unchanged + {"role": "user", "content": reprompt}.
    """
    raise_first_failure([minimum_check("num_generations", num_generations, 1)])
    rewards_list = _to_list(rewards)
    feedback_list = [None] * len(prompts) if feedbacks is None else list(feedbacks)
    n = len(prompts)
    if not (len(completions) == len(rewards_list) == len(feedback_list) == n):
        raise ValueError(
            f"prompts ({n}), completions ({len(completions)}), rewards ({len(rewards_list)}) and "
            f"feedbacks ({len(feedback_list)}) must have the same length"
        )
    if n % num_generations:
        raise ValueError(f"{n} samples do not split into groups of num_generations={num_generations}")

    threshold = float(args.success_reward_threshold)
    success = [_is_success(r, threshold) for r in rewards_list]
    teacher_prompts: list[Prompt] = []
    mask: list[float] = []
    for i in range(n):
        demo_index = _demonstration_index(i, success, num_generations, args)
        feedback = feedback_list[i]
        use_feedback = (
            bool(args.include_environment_feedback)
            and _has_text(feedback)
            and not (per_rollout_feedback and success[i])
            and (not args.environment_feedback_only_without_solution or demo_index is None)
        )
        if demo_index is None and not use_feedback:
            teacher_prompts.append(prompts[i])
            mask.append(0.0)
            continue

        solution = ""
        if demo_index is not None:
            demo = completions[demo_index]
            if args.remove_thinking_from_demonstration:
                demo = remove_thinking(demo)
            solution = args.solution_template.format(successful_previous_attempt=demo)
        feedback_text = args.feedback_template.format(feedback_raw=feedback) if use_feedback else ""
        teacher_prompts.append(_reprompt(prompts[i], solution, feedback_text, args.reprompt_template))
        mask.append(1.0)
    return teacher_prompts, mask


def _demonstration_index(
    i: int, success: list[bool], num_generations: int, args: RepromptSettings
) -> int | None:
    """Lowest-index successful sibling of sample i, or None."""
    if not args.use_successful_as_teacher:
        return None
    start = (i // num_generations) * num_generations
    for j in range(start, start + num_generations):
        if j == i and args.dont_reprompt_on_self_success:
            continue
        if success[j]:
            return j
    return None


def _reprompt(prompt: Prompt, solution: str, feedback: str, template: str) -> Prompt:
    if isinstance(prompt, str):
        return template.format(prompt=prompt, solution=solution, feedback=feedback)
    if not _is_chat(prompt):
        raise TypeError(f"a prompt must be a text or a list of chat messages, got {type(prompt).__name__}")
    text = template.format(prompt=last_user_text(prompt), solution=solution, feedback=feedback)
    return [*prompt[:-1], {"role": "user", "content": text}]


def reprompt_metrics(
    rewards: Sequence[float | None] | Tensor,
    feedbacks: Sequence[str | None] | None,
    self_distillation_mask: Sequence[float] | Tensor,
    *,
    num_generations: int,
    args: RepromptSettings,
    per_rollout_feedback: bool = False,
) -> dict[str, float]:
    """The reference trainer's `self_distillation/*` reprompt statistics for one batch.

    success_group_fraction: groups with any success (self-exclusion ignored);
    success_sample_fraction: samples given a demonstration; feedback_available_fraction /
    feedback_used_fraction: samples with non-whitespace feedback / where it was used;
    reprompt_sample_fraction: mean of the mask.
    """
    rewards_list = _to_list(rewards)
    mask = [float(m) for m in _to_list(self_distillation_mask)]
    n = len(rewards_list)
    feedback_list = [None] * n if feedbacks is None else list(feedbacks)
    threshold = float(args.success_reward_threshold)
    success = [_is_success(r, threshold) for r in rewards_list]
    groups = [success[g : g + num_generations] for g in range(0, n, num_generations)]
    demos = [_demonstration_index(i, success, num_generations, args) is not None for i in range(n)]
    available = [_has_text(f) for f in feedback_list]
    used = [
        bool(args.include_environment_feedback)
        and available[i]
        and not (per_rollout_feedback and success[i])
        and (not args.environment_feedback_only_without_solution or not demos[i])
        for i in range(n)
    ]
    size = max(1, n)
    return {
        "self_distillation/success_group_fraction": sum(any(g) for g in groups) / max(1, len(groups)),
        "self_distillation/success_sample_fraction": sum(demos) / size,
        "self_distillation/feedback_available_fraction": sum(available) / size,
        "self_distillation/feedback_used_fraction": sum(used) / size,
        "self_distillation/reprompt_sample_fraction": sum(mask) / size,
    }


def _pad_token_id(tokenizer: Any) -> int:
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    raise ValueError(
        "the tokenizer has neither a pad_token_id nor an eos_token_id to pad the teacher prompt with"
    )


def _tokenize_prompts(
    prompts: Sequence[Prompt], tokenizer: Any, chat_template_kwargs: dict | None
) -> list[list[int]]:
    """Untruncated ids: chat template + generation prompt for message lists, plain encode for texts."""
    ids: list[list[int] | None] = [None] * len(prompts)
    chat_positions = [i for i, p in enumerate(prompts) if _is_chat(p)]
    text_positions = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    if len(chat_positions) + len(text_positions) != len(prompts):
        raise TypeError("teacher prompts must be texts or lists of chat messages")
    if chat_positions:
        encoded = tokenizer.apply_chat_template(
            [list(prompts[i]) for i in chat_positions],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **(chat_template_kwargs or {}),
        )["input_ids"]
        for i, row in zip(chat_positions, encoded):
            ids[i] = list(row)
    if text_positions:
        # The tokenizer's default special tokens on purpose: this is how the reference encodes text prompts.
        encoded = tokenizer([prompts[i] for i in text_positions])["input_ids"]
        for i, row in zip(text_positions, encoded):
            ids[i] = list(row)
    return ids  # type: ignore[return-value]


class TeacherTokens(NamedTuple):
    """The teacher's input: ``input_ids`` [B, P + T] (long), ``attention_mask`` [B, P + T] (the
    completion mask's dtype) and ``prompt_length`` P (the column where the completion starts)."""

    input_ids: Tensor
    attention_mask: Tensor
    prompt_length: int


def tokenize_teacher_prompts(
    teacher_prompts: Sequence[Prompt],
    completion_ids: Tensor,
    completion_mask: Tensor,
    tokenizer: Any,
    *,
    max_reprompt_len: int,
    chat_template_kwargs: dict | None = None,
) -> TeacherTokens:
    """Teacher input = [left-padded teacher prompt ‖ the student's completion tokens].

    Each teacher prompt keeps its last `max_reprompt_len` tokens (left truncation), is
    left-padded with the tokenizer's pad id (eos when there is none) to the batch's
    longest, and is followed by the unchanged completion block, so row t of the teacher's
    completion logits lines up with the student's.

    Returns the ``TeacherTokens``: ids, attention mask and P (the completion start column).
    """
    raise_first_failure([positive_check("max_reprompt_len", max_reprompt_len)])
    if len(teacher_prompts) != completion_ids.shape[0]:
        raise ValueError(f"{len(teacher_prompts)} teacher prompts for {completion_ids.shape[0]} completions")
    device = completion_ids.device
    pad_id = _pad_token_id(tokenizer)
    rows = [
        ids[-max_reprompt_len:] for ids in _tokenize_prompts(teacher_prompts, tokenizer, chat_template_kwargs)
    ]
    width = max((len(r) for r in rows), default=0)
    prompt_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(rows), width), dtype=completion_mask.dtype)
    for b, row in enumerate(rows):
        if row:
            prompt_ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            prompt_mask[b, width - len(row) :] = 1
    return TeacherTokens(
        input_ids=torch.cat([prompt_ids.to(device), completion_ids.long()], dim=1),
        attention_mask=torch.cat([prompt_mask.to(device), completion_mask], dim=1),
        prompt_length=width,
    )
