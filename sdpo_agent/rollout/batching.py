"""The data of one generation batch, from the rollout to the loss.

* :class:`GenerationResult`: what the rollout step produced for this process's dataset rows
  (prompts, episodes, decoded completions), and where those rows sit in the batch gathered
  over all processes.
* :class:`Scores`: the reward step's verdict on them (advantages, validity, rewards).
* :class:`RolloutBatch`: the padded tensors every loss reads, split into per-step micro-batches;
  SDPO adds its :class:`TeacherContext`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from .agent_loop import Rollout
from .generation import left_pad, right_pad

Row = dict[str, Any]
"""A dataset row: ``prompt`` (text or chat messages), ``task_index``, ``privileged_context``, …"""
Prompt = str | list[dict[str, Any]]
"""A prompt as the reward functions see it: text, or chat messages."""

# The batch's keys as TRL's trainers name them (the flat form of :meth:`RolloutBatch.to_dict`).
TEACHER_KEYS = ("teacher_input_ids", "teacher_attention_mask", "self_distillation_mask")


@dataclass
class GenerationResult:
    """One generation batch on this process, as the rollout step left it.

    ``process_rows`` is where these rows sit in the batch gathered over all processes: the one
    place that says which gathered rows are this process's (group advantages and SDPO's
    reprompts are computed over the gathered batch, then cut back to these rows).
    """

    mode: str
    rows: list[Row]
    prompts: list[Prompt]
    rollouts: list[Rollout]
    completions: list[str]
    process_rows: slice

    def __len__(self) -> int:
        return len(self.rollouts)


@dataclass
class Scores:
    """The reward step's verdict on this process's rows.

    ``advantages`` [B] are group-normalised over the gathered batch, ``valid`` [B] (bool) is
    False where the judge failed, ``rewards`` are the weighted totals (None where invalid).
    """

    advantages: Tensor
    valid: Tensor
    rewards: list[float | None]


@dataclass
class TeacherContext:
    """SDPO's teacher input for each row: the reprompt followed by the row's completion.

    ``self_distillation_mask`` [B] is 1.0 where the row has a teacher signal (a successful
    sibling or feedback), else 0.0.
    """

    input_ids: Tensor
    attention_mask: Tensor
    self_distillation_mask: Tensor

    def select(self, rows: Tensor | slice) -> TeacherContext:
        return TeacherContext(
            self.input_ids[rows], self.attention_mask[rows], self.self_distillation_mask[rows]
        )


@dataclass
class RolloutBatch:
    """The tensors of a (micro-)batch of rollouts; every tensor's first axis is the row.

    prompt_ids/prompt_mask [B, P] (left-padded), completion_ids [B, T] (right-padded),
    completion_attention_mask [B, T] (non-padding), completion_mask [B, T] (the loss mask:
    tokens the policy sampled), advantages [B], valid [B] (1.0/0.0), old_per_token_logps
    [B, T] (log π_old of each sampled token, when a batch outlives an optimizer step) and,
    for SDPO, the teacher context.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_attention_mask: Tensor
    completion_mask: Tensor
    advantages: Tensor
    valid: Tensor
    old_per_token_logps: Tensor | None = None
    teacher: TeacherContext | None = None

    @property
    def num_rows(self) -> int:
        return int(self.completion_ids.shape[0])

    @property
    def completion_length(self) -> int:
        return int(self.completion_ids.shape[1])

    @property
    def policy_loss_mask(self) -> Tensor:
        """m = completion_mask × valid: the tokens the policy loss trains on."""
        return self.completion_mask * self.valid.unsqueeze(1)

    def require_teacher(self) -> TeacherContext:
        """The teacher context, which SDPO's loss needs (``SDPOTrainer.extend_batch`` builds it)."""
        if self.teacher is None:
            raise ValueError("this batch has no teacher context; SDPOTrainer.extend_batch builds it")
        return self.teacher

    def select(self, rows: Tensor | slice) -> RolloutBatch:
        """The batch restricted to ``rows`` (indices or a slice) of every tensor."""
        old = self.old_per_token_logps
        return RolloutBatch(
            prompt_ids=self.prompt_ids[rows],
            prompt_mask=self.prompt_mask[rows],
            completion_ids=self.completion_ids[rows],
            completion_attention_mask=self.completion_attention_mask[rows],
            completion_mask=self.completion_mask[rows],
            advantages=self.advantages[rows],
            valid=self.valid[rows],
            old_per_token_logps=None if old is None else old[rows],
            teacher=None if self.teacher is None else self.teacher.select(rows),
        )

    def split(self, num_chunks: int) -> list[RolloutBatch]:
        """``num_chunks`` equal micro-batches, in row order."""
        size = self.num_rows
        if size % num_chunks:
            raise ValueError(f"generation batch of {size} does not split into {num_chunks} equal steps")
        step = size // num_chunks
        return [self.select(slice(i * step, (i + 1) * step)) for i in range(num_chunks)]

    def to_dict(self) -> dict[str, Tensor | None]:
        """The flat form with TRL's key names (``teacher_input_ids``, … for the teacher context)."""
        out: dict[str, Tensor | None] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "teacher"
        }
        teacher = self.teacher
        out.update(
            zip(
                TEACHER_KEYS,
                (None, None, None)
                if teacher is None
                else (teacher.input_ids, teacher.attention_mask, teacher.self_distillation_mask),
            )
        )
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RolloutBatch:
        """The inverse of :meth:`to_dict`: a batch from TRL-named keys (the teacher keys all or none)."""
        names = {f.name for f in fields(cls)} - {"teacher"}
        unknown = sorted(set(values) - names - set(TEACHER_KEYS))
        if unknown:
            raise ValueError(f"RolloutBatch has no field(s) {unknown}; known: {sorted(names)}")
        present = [k for k in TEACHER_KEYS if values.get(k) is not None]
        if present and len(present) != len(TEACHER_KEYS):
            raise ValueError(f"the teacher context needs all of {TEACHER_KEYS}, got only {present}")
        teacher = TeacherContext(*(values[k] for k in TEACHER_KEYS)) if present else None
        return cls(**{k: v for k, v in values.items() if k in names}, teacher=teacher)

    def with_teacher(self, teacher: TeacherContext) -> RolloutBatch:
        return replace(self, teacher=teacher)


def build_tensors(
    rollouts: Sequence[Rollout],
    scores: Scores,
    *,
    pad_id: int,
    eos_ids: Sequence[int],
    mask_truncated: bool,
    device: torch.device | str | None,
) -> RolloutBatch:
    """Pad ``rollouts`` into a :class:`RolloutBatch` with ``scores``' advantages and validity;
    the loss mask is all zeros for a truncated completion when ``mask_truncated``."""
    prompt_ids, prompt_mask = left_pad([r.prompt_ids for r in rollouts], pad_id, device)
    completion_ids = right_pad([r.completion_ids for r in rollouts], pad_id, device)
    attention = right_pad([[1] * len(r.completion_ids) for r in rollouts], 0, device)
    loss_mask = right_pad([r.completion_mask for r in rollouts], 0, device)
    if mask_truncated:
        eos = set(eos_ids)
        keep = torch.tensor(
            [bool(r.completion_ids) and r.completion_ids[-1] in eos for r in rollouts], device=device
        )
        loss_mask = loss_mask * keep.unsqueeze(1).long()
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_attention_mask=attention,
        completion_mask=loss_mask,
        advantages=scores.advantages.to(device),
        valid=scores.valid.to(device, torch.float32),
    )


__all__ = ["GenerationResult", "Prompt", "RolloutBatch", "Row", "Scores", "TeacherContext", "build_tensors"]
