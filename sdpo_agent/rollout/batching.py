"""Rollouts to padded tensors, and a generation batch to per-step micro-batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .agent_loop import Rollout
from .generation import left_pad, right_pad


def build_tensors(
    rollouts: Sequence[Rollout], *, pad_id: int, eos_ids: Sequence[int], mask_truncated: bool, device: Any
) -> dict[str, Any]:
    """prompt_ids/prompt_mask (left-padded), completion_ids (right-padded),
    completion_attention_mask (non-padding) and completion_mask (the loss mask: tokens the
    policy sampled; all zeros for a truncated completion when ``mask_truncated``)."""
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
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_attention_mask": attention,
        "completion_mask": loss_mask,
    }


def split_batch(batch: dict[str, Any], num_chunks: int) -> list[dict[str, Any]]:
    """Split every tensor along the batch axis; other values are shared by all chunks."""
    size = next(v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0)
    if size % num_chunks:
        raise ValueError(f"generation batch of {size} does not split into {num_chunks} equal steps")
    step = size // num_chunks
    chunks = []
    for i in range(num_chunks):
        rows = slice(i * step, (i + 1) * step)
        chunks.append(
            {k: v[rows] if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in batch.items()}
        )
    return chunks
