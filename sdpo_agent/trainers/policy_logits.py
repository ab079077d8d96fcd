"""The logits a model gives a batch's completion tokens: what every loss of the trainers reads.

One forward of ``prompt + completion`` through the model's own ``forward``, keeping only the
positions that predict completion tokens (``logits_to_keep``, so the LM head runs on those alone).
"""

from __future__ import annotations

import torch

from ..losses import selective_log_softmax
from ..rollout.batching import RolloutBatch


def completion_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_length: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Logits predicting each of the last ``completion_length`` tokens, divided by
    ``temperature``: [B, T, V]."""
    # generate()'s positions for a left-padded prompt.
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits: torch.Tensor = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=completion_length + 1,
        use_cache=False,
    ).logits[:, :-1, :]
    return logits / temperature if temperature != 1.0 else logits


def student_inputs(
    batch: RolloutBatch, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of prompt + completion for the batch's (selected) rows."""
    ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
    mask = torch.cat([batch.prompt_mask, batch.completion_attention_mask], dim=1)
    if rows is not None:
        ids, mask = ids[rows], mask[rows]
    return ids, mask


def student_logits(
    model: torch.nn.Module, batch: RolloutBatch, temperature: float, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """``completion_logits`` of the policy on the batch's (selected) rows."""
    ids, mask = student_inputs(batch, rows)
    return completion_logits(model, ids, mask, batch.completion_length, temperature)


@torch.no_grad()
def sampled_token_log_probs(
    model: torch.nn.Module, batch: RolloutBatch, temperature: float, chunk_rows: int
) -> torch.Tensor:
    """log π(y_t) of every completion token under ``model``, ``chunk_rows`` rows at a time: [B, T]."""
    total = batch.num_rows
    chunks = []
    for start in range(0, total, chunk_rows):
        rows = torch.arange(start, min(start + chunk_rows, total))
        logits = student_logits(model, batch, temperature, rows)
        chunks.append(selective_log_softmax(logits, batch.completion_ids[rows]))
    return torch.cat(chunks)


__all__ = ["completion_logits", "sampled_token_log_probs", "student_inputs", "student_logits"]
