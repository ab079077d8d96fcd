"""Teacher regularisation: which weights produce the self-teacher's logits.

* ``ema``: a copy of the student; after each optimizer step θ_T ← (1 − λ)·θ_T + λ·θ_S.
* ``none``: the student itself, run without gradient (TRL 1.16's ``teacher_model_kind="live"``).
* ``base``: a frozen copy of the initial student, never updated (TRL 1.16's ``"base"``).
* ``trust_region``: logits (1 − λ)·z_initial + λ·z_current, from a frozen copy of the
  initial model and the current policy, both on the teacher context.

``storage_dtype="bfloat16"`` keeps the teacher copy's large weights in bfloat16 (computed with
in the policy's dtype; the EMA stochastically rounded): half the teacher's memory, at the cost
of an EMA that is exact only in expectation (``teacher_storage.CompactWeights``). ``compute_dtype="bfloat16"``
runs every teacher forward under bfloat16 autocast; the logits come back in bfloat16.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import LOW_PRECISION_DTYPES, raise_first_failure, teacher_checks
from .teacher_storage import CompactWeights, compact_copy_memo

TEACHER_FILE = "sdpo_teacher.safetensors"

Forward = Callable[[nn.Module], torch.Tensor]
"""``forward(model) -> logits`` on the teacher context."""


def frozen_copy(model: nn.Module, memo: dict[int, Any] | None = None) -> nn.Module:
    clone = copy.deepcopy(model, memo)
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

    def __init__(
        self,
        mode: str,
        student: nn.Module,
        update_rate: float,
        *,
        storage_dtype: str | None = None,
        compute_dtype: str | None = None,
        seed: int = 0,
    ) -> None:
        # The config's own rules: a Teacher is also built without one (tests, other trainers).
        raise_first_failure(
            teacher_checks(mode=mode, storage_dtype=storage_dtype, compute_dtype=compute_dtype)
        )
        self.mode = mode
        self.update_rate = float(update_rate)
        self.compute_dtype = LOW_PRECISION_DTYPES.get(compute_dtype or "")
        self.model: nn.Module | None = None
        self.compact: CompactWeights | None = None
        if mode == "none":
            return
        if storage_dtype is None:
            self.model = frozen_copy(student)
            return
        dtype = LOW_PRECISION_DTYPES[storage_dtype]
        memo, initial = compact_copy_memo(student, dtype)
        self.model = frozen_copy(student, memo)
        self.compact = CompactWeights(self.model, dtype, seed=seed, initial=initial)

    @torch.no_grad()
    def logits(self, forward: Forward, student: nn.Module) -> torch.Tensor:
        """``forward(model) -> logits`` on the teacher context, evaluated by the right weights."""
        if self.model is None:  # mode "none": the student itself
            return self._run(forward, student).detach()
        teacher_logits = self._run(forward, self.model)
        if self.mode in ("ema", "base"):
            return teacher_logits
        current = self._run(forward, student).detach()
        return torch.lerp(
            teacher_logits.to(current.dtype), current, self.update_rate
        )  # (1 − λ)·z_init + λ·z_cur

    def _run(self, forward: Forward, model: nn.Module) -> torch.Tensor:
        if self.compute_dtype is None:
            return forward(model)
        device_type = next(model.parameters()).device.type
        with torch.autocast(device_type=device_type, dtype=self.compute_dtype):
            return forward(model)

    @torch.no_grad()
    def after_optimizer_step(self, student: nn.Module) -> None:
        if self.mode != "ema" or self.update_rate == 0.0 or self.model is None:
            return
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        if len(teacher_params) != len(student_params):
            raise RuntimeError("teacher and student parameter lists differ; cannot apply the EMA update")
        stored = self.compact
        compact = stored.compact if stored is not None else {}
        full = [(t, s) for t, s in zip(teacher_params, student_params) if t not in compact]
        if full:
            torch._foreach_lerp_([t for t, _ in full], [s.to(t.dtype) for t, s in full], self.update_rate)
        for teacher_param, student_param in zip(teacher_params, student_params):
            if stored is not None and teacher_param in compact:
                stored.lerp_(teacher_param, student_param, self.update_rate)

    def to(self, device: Any) -> Teacher:
        if self.compact is not None:
            self.compact.to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's weights by name in their compute dtype (tied weights once)."""
        if self.model is None:
            return {}
        stored = self.compact
        return {
            name: (stored.full(p) if stored is not None and p in stored.compact else p.detach()).contiguous()
            for name, p in self.model.named_parameters()
        }

    def save(self, directory: str) -> None:
        if self.model is None:
            return

        save_file(self.state_dict(), os.path.join(directory, TEACHER_FILE))

    def load(self, directory: str) -> bool:
        path = os.path.join(directory, TEACHER_FILE)
        if self.model is None or not os.path.exists(path):
            return False

        state = load_file(path, device=str(next(self.model.parameters()).device))
        params = dict(self.model.named_parameters())
        if set(state) != set(params):
            missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
            raise RuntimeError(
                f"{path}: teacher weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        stored = self.compact
        with torch.no_grad():
            for name, param in params.items():
                if stored is not None and param in stored.compact:
                    stored.assign(param, state[name])
                else:
                    param.copy_(state[name])
        return True
