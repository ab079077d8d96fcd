"""TRL 1.16's SDPO training batch -> our ``RolloutBatch``, so code written against TRL's
``compute_loss(model, inputs)`` calls ``SDPOTrainer.compute_loss`` unchanged.

TRL's batch is a dict: ``prompt_ids``/``prompt_mask`` [B, P] (left-padded), ``completion_ids``/
``completion_mask`` [B, T] (right-padded; TRL's one completion mask is both the attention mask and
the loss mask), ``teacher_input_ids``/``teacher_attention_mask`` [B, P' + T] (teacher context, then
the same completion), optional ``self_distillation_mask`` [B] (absent: every row), ``advantages``
[B] and ``old_per_token_logps`` [B, T]. Ours tells the attention mask from the loss mask (they
differ in multi-turn episodes) and marks each row ``valid``; a TRL row is always valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import torch

from ..rollout.batching import RolloutBatch, TeacherContext

TRL_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
TRL_TEACHER_KEYS = ("teacher_input_ids", "teacher_attention_mask")


def is_trl_batch(inputs: object) -> TypeGuard[Mapping[str, Any]]:
    """TRL's trainer hands ``compute_loss`` a dict; ours a ``RolloutBatch``."""
    return isinstance(inputs, Mapping)


def from_trl_batch(inputs: Mapping[str, Any]) -> RolloutBatch:
    """Our batch from TRL's dict (the teacher keys are required, as TRL's distillation loss needs them)."""
    needed = TRL_KEYS + TRL_TEACHER_KEYS
    missing = [key for key in needed if key not in inputs]
    if missing:
        raise ValueError(
            f"compute_loss got a TRL-style batch without {missing}; it needs {list(needed)} "
            "(and optionally self_distillation_mask, advantages, old_per_token_logps)"
        )
    completion_ids = inputs["completion_ids"]
    rows, device = completion_ids.shape[0], completion_ids.device
    advantages = inputs.get("advantages")
    sd_mask = inputs.get("self_distillation_mask")
    return RolloutBatch(
        prompt_ids=inputs["prompt_ids"],
        prompt_mask=inputs["prompt_mask"],
        completion_ids=completion_ids,
        completion_attention_mask=inputs["completion_mask"],
        completion_mask=inputs["completion_mask"],
        advantages=torch.zeros(rows, device=device) if advantages is None else advantages,
        valid=torch.ones(rows, device=device),
        old_per_token_logps=inputs.get("old_per_token_logps"),
        teacher=TeacherContext(
            input_ids=inputs["teacher_input_ids"],
            attention_mask=inputs["teacher_attention_mask"],
            self_distillation_mask=torch.ones(rows, device=device)
            if sd_mask is None
            else sd_mask.to(device, torch.float32),
        ),
    )
