"""``GRPOTrainer``: the RLVR baseline on the same rollout path as SDPO."""

from __future__ import annotations

from typing import Any

import torch

from .config import GRPOConfig
from .losses import policy_loss, selective_log_softmax
from .teacher import _frozen_copy
from .trainer_base import RolloutTrainer


def policy_gradient_loss(
    trainer: RolloutTrainer, logits: torch.Tensor, inputs: dict[str, Any], ref_logps=None
):
    """The clipped-surrogate loss of the GRPO family on one micro-batch (before GA scaling)."""
    args = trainer.args
    logps = selective_log_softmax(logits, inputs["completion_ids"])
    mask = inputs["completion_mask"] * inputs["valid"].unsqueeze(1)
    _, loss = policy_loss(
        logps,
        inputs.get("old_per_token_logps"),
        inputs["advantages"],
        mask,
        epsilon=args.epsilon,
        epsilon_high=args.epsilon_high,
        importance_sampling_level=args.importance_sampling_level,
        loss_type=args.loss_type,
        max_completion_length=args.max_completion_length,
        beta=args.beta,
        ref_per_token_logps=ref_logps,
    )
    return loss


class GRPOTrainer(RolloutTrainer):
    """Group Relative Policy Optimization (``loss_type`` grpo, bnpo, dr_grpo or dapo)."""

    config_class = GRPOConfig
    algorithm = "grpo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A frozen reference model only when a KL penalty asks for one.
        self.ref_model = _frozen_copy(self.accelerator.unwrap_model(self.model)) if self.args.beta else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("GRPOTrainer does not return outputs")
        ids, mask = self._student_inputs(inputs)
        length = inputs["completion_ids"].shape[1]
        logits = self.completion_logits(model, ids, mask, length)
        ref_logps = None
        if self.ref_model is not None:
            with torch.no_grad():
                ref_logits = self.completion_logits(self.ref_model, ids, mask, length)
                ref_logps = selective_log_softmax(ref_logits, inputs["completion_ids"])
        loss = policy_gradient_loss(self, logits, inputs, ref_logps)
        mode = "train" if model.training else "eval"
        self._metrics[mode]["policy_loss"].append(loss.item())
        accumulation = self.current_gradient_accumulation_steps if model.training else 1
        return loss / accumulation
