"""The reward step: environment rewards and TRL-convention reward functions, combined, and
the group-relative advantages computed from them.

A reward function is ``f(prompts, completions, completion_ids=..., **columns) -> list[float | None]``;
``None`` means "not applicable to this sample" (as in TRL, the weighted sum skips it). A
rollout is *invalid* — excluded from advantages and losses — when no reward source could
score it (all ``None``) or its environment verdict is ``judge_error``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .config import minimum_check, raise_first_failure, resolve_scale_rewards

RewardFunc = Callable[..., Sequence[float | None]]
# Added to the reward std, as in the reference, so constant groups give zero advantages.
_ADVANTAGE_STD_EPS = 1e-4


@dataclass
class RewardBatch:
    per_func: torch.Tensor  # [N, F], NaN where a source returned None
    total: torch.Tensor  # [N], weighted sum over the non-None sources (0 for invalid rows)
    valid: torch.Tensor  # [N] bool
    names: list[str]


def reward_func_name(func: Any) -> str:
    if hasattr(func, "config") and hasattr(func.config, "_name_or_path"):
        return str(func.config._name_or_path).split("/")[-1]
    return str(getattr(func, "__name__", type(func).__name__))


def _call_reward_func(
    func: RewardFunc,
    prompts: list[Any],
    completions: list[Any],
    completion_ids: list[list[int]],
    columns: dict[str, list[Any]],
) -> list[float | None]:
    kwargs = dict(columns)
    params = inspect.signature(func).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if accepts_any or "completion_ids" in params:
        kwargs["completion_ids"] = completion_ids
    if not accepts_any:
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    values = list(func(prompts=prompts, completions=completions, **kwargs))
    if len(values) != len(completions):
        raise ValueError(
            f"reward function {reward_func_name(func)!r} returned {len(values)} rewards for {len(completions)} completions"
        )
    for value in values:
        if value is not None and not isinstance(value, (int, float)):
            raise TypeError(
                f"reward function {reward_func_name(func)!r} returned {type(value).__name__}, expected float or None"
            )
    return values


def score(
    reward_funcs: Sequence[RewardFunc],
    weights: torch.Tensor,
    *,
    prompts: list[Any],
    completions: list[Any],
    completion_ids: list[list[int]],
    columns: dict[str, list[Any]],
    env_rewards: list[float | None] | None = None,
    judge_errors: list[bool] | None = None,
) -> RewardBatch:
    """Score a batch of rollouts; the env reward (when present) is the first source."""
    sources: list[list[float | None]] = []
    names: list[str] = []
    if env_rewards is not None:
        sources.append(list(env_rewards))
        names.append("env")
    for func in reward_funcs:
        sources.append(_call_reward_func(func, prompts, completions, completion_ids, columns))
        names.append(reward_func_name(func))
    n = len(completions)
    per_func = torch.tensor(
        [[_as_float(s[i]) for s in sources] for i in range(n)], dtype=torch.float32
    ).reshape(n, len(sources))
    if weights.numel() != len(sources):
        raise ValueError(
            f"reward_weights has {weights.numel()} entries but there are {len(sources)} reward sources {names}"
        )
    scored = ~torch.isnan(per_func)
    total = torch.where(scored, per_func * weights.to(per_func.dtype), torch.zeros_like(per_func)).sum(dim=1)
    valid = scored.any(dim=1) if sources else torch.zeros(n, dtype=torch.bool)
    if judge_errors is not None:
        valid &= ~torch.tensor(judge_errors, dtype=torch.bool)
    return RewardBatch(
        per_func=per_func, total=torch.where(valid, total, torch.zeros_like(total)), valid=valid, names=names
    )


class RewardModelFunc:
    """A sequence-classification reward model used as a reward function (TRL's convention:
    the score is ``logits[:, 0]`` of prompt + completion)."""

    def __init__(
        self, model: Any, tokenizer: Any, chat_template_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.template_kwargs = dict(chat_template_kwargs or {})
        self.__name__ = reward_func_name(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @torch.no_grad()
    def __call__(self, prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = []
        for prompt, completion in zip(prompts, completions):
            if isinstance(prompt, list):
                texts.append(
                    self.tokenizer.apply_chat_template(
                        prompt + completion, tokenize=False, **self.template_kwargs
                    )
                )
            else:
                texts.append(prompt + completion)
        inputs = self.tokenizer(
            texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
        )
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        scores: list[float] = self.model(**inputs).logits[:, 0].float().tolist()
        return scores


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def load_reward_funcs(
    reward_funcs: Any, reward_processing_classes: Any = None, trust_remote_code: bool = False
) -> list[RewardFunc]:
    """Normalise ``reward_funcs`` (a callable, a model id/path, a model, or a list of them);
    ``trust_remote_code`` goes to every reward model and tokenizer loaded here."""
    remote = {"trust_remote_code": trust_remote_code}
    if reward_funcs is None:
        return []
    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    classes = reward_processing_classes
    if not isinstance(classes, (list, tuple)):
        classes = [classes] * len(funcs)
    if len(classes) != len(funcs):
        raise ValueError(f"got {len(classes)} reward_processing_classes for {len(funcs)} reward_funcs")
    out: list[RewardFunc] = []
    for func, tokenizer in zip(funcs, classes):
        if isinstance(func, str):
            model = AutoModelForSequenceClassification.from_pretrained(func, num_labels=1, **remote)
            out.append(RewardModelFunc(model, tokenizer or AutoTokenizer.from_pretrained(func, **remote)))
        elif isinstance(func, torch.nn.Module):
            if tokenizer is None:
                config: Any = func.config  # a transformers model's config: where its weights came from
                tokenizer = AutoTokenizer.from_pretrained(config._name_or_path, **remote)
            out.append(RewardModelFunc(func, tokenizer))
        elif callable(func):
            out.append(func)
        else:
            raise TypeError(
                f"reward function must be callable, a model or a model id, got {type(func).__name__}"
            )
    return out


# --------------------------------------------------------------------------- advantages
def weighted_rewards(rewards_per_func: Tensor, reward_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """R_i = Σ_k w_k · r_ik over reward functions, and which rows have a reward at all.

    rewards_per_func[N, K] holds NaN where function k returned None. As in the reference,
    a NaN term is skipped (nansum); a row where every function returned None is marked
    invalid (False) instead of silently scoring 0.
    """
    if rewards_per_func.dim() == 1:
        rewards_per_func = rewards_per_func.unsqueeze(1)
    if reward_weights is None:
        reward_weights = torch.ones(rewards_per_func.shape[1], dtype=rewards_per_func.dtype)
    weights = reward_weights.to(device=rewards_per_func.device, dtype=rewards_per_func.dtype)
    valid = ~torch.isnan(rewards_per_func).all(dim=1)
    return (rewards_per_func * weights).nansum(dim=1), valid


def group_advantages(
    rewards: Tensor | list[float | None],
    num_generations: int,
    scale_rewards: str | bool,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Group-relative advantages over consecutive groups of G = num_generations rewards.

        A_i = (R_i − mean_group(R)) / (σ + 1e−4)
        σ = unbiased std of the group ("group"), of the whole batch ("batch"), or
            σ + 1e−4 := 1 ("none"); True/False mean "group"/"none". σ = 0 with < 2 entries.

    Improvement over the reference: entries that are NaN/None or have valid=False are
    left out of every mean and std, get A = 0, and come back as False in the returned
    validity mask, which the trainer multiplies into every loss mask.

    Returns (advantages[N], valid[N] bool).
    """
    raise_first_failure([minimum_check("num_generations", num_generations, 1)])
    mode = resolve_scale_rewards(scale_rewards)
    if not isinstance(rewards, Tensor):
        rewards = torch.tensor([math.nan if r is None else float(r) for r in rewards], dtype=torch.float32)
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if rewards.dim() != 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"rewards must be 1-D with a length divisible by num_generations={num_generations}, "
            f"got shape {tuple(rewards.shape)}"
        )
    ok = ~torch.isnan(rewards)
    if valid is not None:
        ok = ok & valid.to(device=rewards.device, dtype=torch.bool)
    okf = ok.to(rewards.dtype)
    r = torch.where(ok, rewards, torch.zeros_like(rewards))

    grouped, grouped_ok = r.view(-1, num_generations), okf.view(-1, num_generations)
    count = grouped_ok.sum(1, keepdim=True)
    mean = grouped.sum(1, keepdim=True) / count.clamp(min=1.0)
    centered = (grouped - mean) * grouped_ok
    advantages = centered.reshape(-1)

    if mode == "group":
        std = _unbiased_std(centered, count).expand_as(centered).reshape(-1)
        advantages = advantages / (std + _ADVANTAGE_STD_EPS)
    elif mode == "batch":
        total = okf.sum()
        batch_centered = (r - r.sum() / total.clamp(min=1.0)) * okf
        advantages = advantages / (_unbiased_std(batch_centered, total) + _ADVANTAGE_STD_EPS)
    return advantages, ok


def _unbiased_std(centered: Tensor, count: Tensor) -> Tensor:
    """sqrt(Σ c² / (n − 1)) along the last axis (all of it for 1-D), 0 where n < 2."""
    sq = (centered**2).sum(-1, keepdim=centered.dim() > 1)
    std = (sq / (count - 1).clamp(min=1.0)).sqrt()
    return torch.where(count >= 2, std, torch.zeros_like(std))
