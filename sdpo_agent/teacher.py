"""Teacher regularisation: which weights produce the self-teacher's logits.

* ``ema``: a copy of the student; after each optimizer step θ_T ← (1 − λ)·θ_T + λ·θ_S.
* ``none``: the student itself, run without gradient.
* ``trust_region``: logits (1 − λ)·z_initial + λ·z_current, from a frozen copy of the
  initial model and the current policy, both on the teacher context.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

TEACHER_FILE = "sdpo_teacher.safetensors"


def _frozen_copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.requires_grad_(False)
    clone.eval()
    # No backward runs through the teacher (transformers 5 renamed the switch).
    disable = getattr(clone, "activation_checkpointing_disable", None) or getattr(
        clone, "gradient_checkpointing_disable", None
    )
    if disable is not None:
        disable()
    return clone


class Teacher:
    """Holds the teacher's weights (if any) and computes teacher logits without gradient."""

    def __init__(self, mode: str, student: nn.Module, update_rate: float) -> None:
        if mode not in ("ema", "none", "trust_region"):
            raise ValueError(f"teacher_regularization must be ema, none or trust_region, got {mode!r}")
        self.mode = mode
        self.update_rate = float(update_rate)
        self.model: nn.Module | None = _frozen_copy(student) if mode in ("ema", "trust_region") else None

    @torch.no_grad()
    def logits(self, forward, student: nn.Module) -> torch.Tensor:
        """``forward(model) -> logits`` on the teacher context, evaluated by the right weights."""
        if self.mode == "none":
            return forward(student).detach()
        teacher_logits = forward(self.model)
        if self.mode == "ema":
            return teacher_logits
        current = forward(student).detach()
        return torch.lerp(teacher_logits, current, self.update_rate)  # (1 − λ)·z_init + λ·z_cur

    @torch.no_grad()
    def after_optimizer_step(self, student: nn.Module) -> None:
        if self.mode != "ema" or self.update_rate == 0.0:
            return
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        if len(teacher_params) != len(student_params):
            raise RuntimeError("teacher and student parameter lists differ; cannot apply the EMA update")
        torch._foreach_lerp_(
            teacher_params, [p.to(t.dtype) for p, t in zip(student_params, teacher_params)], self.update_rate
        )

    def to(self, device: Any) -> Teacher:
        if self.model is not None:
            self.model.to(device)
        return self

    def save(self, directory: str) -> None:
        if self.model is None:
            return
        from safetensors.torch import save_model

        save_model(self.model, os.path.join(directory, TEACHER_FILE))

    def load(self, directory: str) -> bool:
        path = os.path.join(directory, TEACHER_FILE)
        if self.model is None or not os.path.exists(path):
            return False
        from safetensors.torch import load_model

        load_model(self.model, path, device=str(next(self.model.parameters()).device))
        return True
