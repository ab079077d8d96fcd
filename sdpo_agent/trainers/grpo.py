"""``GRPOTrainer``: the RLVR baseline on the same rollout path as SDPO."""

from __future__ import annotations

from typing import Any

import torch

from ..config import GRPOConfig
from ..losses import rows_with_policy_gradient, selective_log_softmax
from ..rollout.batching import RolloutBatch
from ..rollout.phase_times import timed_phase
from ..teacher import frozen_copy
from .base import RolloutTrainer, zero_loss
from .policy_logits import student_logits


class GRPOTrainer(RolloutTrainer):
    """Group Relative Policy Optimization (``loss_type`` grpo, bnpo, dr_grpo or dapo).

    Rows with a zero advantage (flat-reward groups) add exactly nothing to the loss or its
    gradient, so their forward and backward are skipped.

    >>> from sdpo_agent import GRPOConfig, GRPOTrainer
    >>> args = GRPOConfig(
    ...     output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
    ...     max_completion_length=8, report_to=[], disable_tqdm=True,
    ... )
    >>> GRPOTrainer(model="tiny", args=args, env="sdpo/MCQ-v0").train()
    {...}
    TrainOutput(global_step=1, ...)
    """

    config_class = GRPOConfig
    algorithm = "grpo"
    args: GRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A frozen reference model only when a KL penalty asks for one.
        self.ref_model: torch.nn.Module | None = (
            frozen_copy(self.accelerator.unwrap_model(self.model)) if self.args.beta else None
        )

    @timed_phase("loss")
    def compute_loss(  # type: ignore[override]  # Trainer types its batch as a dict
        self,
        model: torch.nn.Module,
        inputs: RolloutBatch,
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        if return_outputs:
            raise ValueError("GRPOTrainer does not return outputs")
        mode = "train" if model.training else "eval"
        rows = rows_with_policy_gradient(inputs.advantages, inputs.valid, self.args.beta)
        if rows is not None and rows.numel() == 0:
            loss = zero_loss(model)
        else:
            with self.phase_times.measure("student_forward"):
                logits = student_logits(model, inputs, self.args.temperature, rows)
            ref_logps = None
            if self.ref_model is not None:
                with torch.no_grad():
                    ref_logits = student_logits(self.ref_model, inputs, self.args.temperature)
                    ref_logps = selective_log_softmax(ref_logits, inputs.completion_ids)
            loss = self.policy_gradient_loss(logits, inputs, ref_logps, rows)
        self._metrics[mode]["policy_loss"].append(loss.item())
        accumulation = self.current_gradient_accumulation_steps if model.training else 1
        return loss / accumulation


__all__ = ["GRPOConfig", "GRPOTrainer"]
