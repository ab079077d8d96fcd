"""``GRPOTrainer``: the RLVR baseline on the same rollout path as SDPO."""

from __future__ import annotations

from typing import Any

import torch

from ..config import GRPOConfig
from ..losses import aggregate, policy_loss, selective_log_softmax
from ..teacher import _frozen_copy
from .base import RolloutTrainer, zero_loss
from .policy_logits import student_logits


def policy_gradient_loss(
    trainer: RolloutTrainer,
    logits: torch.Tensor,
    inputs: dict[str, Any],
    ref_logps=None,
    rows: torch.Tensor | None = None,
):
    """The clipped-surrogate loss of the GRPO family on one micro-batch (before GA scaling).

    ``logits`` cover ``rows`` of the micro-batch (all when None); the other rows' per-token
    losses count as 0 while their tokens still count in the aggregation, so skipping rows
    whose loss is exactly zero leaves the loss and its gradient unchanged.
    """
    args = trainer.args
    pick = (lambda t: t) if rows is None else (lambda t: None if t is None else t[rows])
    mask = inputs["completion_mask"] * inputs["valid"].unsqueeze(1)
    per_token, _ = policy_loss(
        selective_log_softmax(logits, pick(inputs["completion_ids"])),
        pick(inputs.get("old_per_token_logps")),
        pick(inputs["advantages"]),
        pick(mask),
        epsilon=args.epsilon,
        epsilon_high=args.epsilon_high,
        importance_sampling_level=args.importance_sampling_level,
        loss_type=args.loss_type,
        max_completion_length=args.max_completion_length,
        beta=args.beta,
        ref_per_token_logps=ref_logps,
    )
    if rows is not None:
        full = torch.zeros(mask.shape, dtype=per_token.dtype, device=per_token.device)
        per_token = full.index_put((rows,), per_token)
    return aggregate(per_token, mask, args.loss_type, args.max_completion_length)


def rows_with_policy_gradient(inputs: dict[str, Any], beta: float) -> torch.Tensor | None:
    """Rows whose policy loss can be non-zero: valid, with a non-zero advantage (a group
    whose rewards are all equal has A = 0 exactly). None (all rows) when a KL term to the
    reference model makes every row count."""
    if beta != 0.0:
        return None
    return ((inputs["advantages"] != 0) & inputs["valid"].bool()).nonzero().squeeze(1)


class GRPOTrainer(RolloutTrainer):
    """Group Relative Policy Optimization (``loss_type`` grpo, bnpo, dr_grpo or dapo).

    Rows with a zero advantage (flat-reward groups) add exactly nothing to the loss or its
    gradient, so their forward and backward are skipped.
    """

    config_class = GRPOConfig
    algorithm = "grpo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A frozen reference model only when a KL penalty asks for one.
        self.ref_model = _frozen_copy(self.accelerator.unwrap_model(self.model)) if self.args.beta else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("GRPOTrainer does not return outputs")
        mode = "train" if model.training else "eval"
        rows = rows_with_policy_gradient(inputs, self.args.beta)
        if rows is not None and rows.numel() == 0:
            loss = zero_loss(model)
        else:
            logits = student_logits(model, inputs, self.args.temperature, rows)
            ref_logps = None
            if self.ref_model is not None:
                with torch.no_grad():
                    ref_logits = student_logits(self.ref_model, inputs, self.args.temperature)
                    ref_logps = selective_log_softmax(ref_logits, inputs["completion_ids"])
            loss = policy_gradient_loss(self, logits, inputs, ref_logps, rows)
        self._metrics[mode]["policy_loss"].append(loss.item())
        accumulation = self.current_gradient_accumulation_steps if model.training else 1
        return loss / accumulation


__all__ = ["GRPOConfig", "GRPOTrainer"]
