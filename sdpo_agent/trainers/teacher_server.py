"""The teacher scored by the vLLM server that generates (TRL 1.16's ``use_teacher_server=True``).

With ``teacher_model_kind="live"`` the teacher is the current policy, whose weights the server
already holds for generation. The server scores each row's teacher context + completion with
``prompt_logprobs`` (TRL's ``VLLMClient.get_sequence_logprobs``) and returns, per completion
position, the log-prob of the sampled token and the teacher's top-k. No teacher forward runs in
the trainer. Positions the server has no value for (padding of rows shorter than the batch, rows
with no completion) are masked out of the loss with finite stand-ins, so they give a finite loss
and zero gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..losses import (
    SelfDistillationTerms,
    _append_tail,
    divergence,
    selective_log_softmax,
    topk_renormalised_divergence,
)

# Stand-in for "no value" (-inf) where a divergence term must stay finite: e^-1e4 is exactly 0 in
# float32, so the entry carries neither mass nor gradient.
_NO_VALUE = -1e4


@dataclass
class ServedTeacher:
    """token_log_probs [B, T]: τ_y of each sampled token (-inf where the server gave none);
    topk_log_probs / topk_ids [B, T, K]: the teacher's top-k by rank (-inf / 0 past the end)."""

    token_log_probs: Tensor
    topk_log_probs: Tensor
    topk_ids: Tensor


def request_sequences(
    teacher_input_ids: Tensor, teacher_attention_mask: Tensor, completion_length: int
) -> tuple[list[list[int]], list[int]]:
    """Each row's non-padding teacher context + completion tokens, and its context length (the
    completion is the last ``completion_length`` columns, right-padded)."""
    mask = teacher_attention_mask.detach().cpu().bool()
    ids = teacher_input_ids.detach().cpu()
    prompt_lengths = mask[:, : mask.shape[1] - completion_length].sum(1).tolist()
    return [row[keep].tolist() for row, keep in zip(ids, mask)], [int(n) for n in prompt_lengths]


def served_teacher(
    client: Any,
    teacher_input_ids: Tensor,
    teacher_attention_mask: Tensor,
    completion_length: int,
    *,
    topk: int,
    temperature: float,
) -> ServedTeacher:
    """Ask the server for the teacher's log-probs of every row's completion tokens."""
    rows = teacher_input_ids.shape[0]
    token = torch.full((rows, completion_length), float("-inf"))
    top = torch.full((rows, completion_length, topk), float("-inf"))
    top_ids = torch.zeros((rows, completion_length, topk), dtype=torch.long)
    sequences, prompt_lengths = request_sequences(
        teacher_input_ids, teacher_attention_mask, completion_length
    )
    if rows:
        result = client.get_sequence_logprobs(
            sequences=sequences, prompt_lengths=prompt_lengths, top_logprobs=topk, temperature=temperature
        )
        for i in range(rows):
            n = min(len(result["actual_logprobs"][i]), completion_length)
            if n:
                token[i, :n] = torch.tensor(result["actual_logprobs"][i][:n], dtype=torch.float32)[:, 0]
                top[i, :n] = torch.tensor(result["logprobs"][i][:n], dtype=torch.float32)
                top_ids[i, :n] = torch.tensor(result["logprob_token_ids"][i][:n], dtype=torch.long)
    device = teacher_input_ids.device
    return ServedTeacher(token.to(device), top.to(device), top_ids.to(device))


def served_distillation_terms(
    student_logits: Tensor,
    completion_ids: Tensor,
    teacher: ServedTeacher,
    required: Tensor,
    *,
    mode: str,
    alpha: float,
    add_tail: bool,
) -> SelfDistillationTerms:
    """Per-token loss against the served teacher, zero where ``required`` [B, T] is 0.

    sampled_token:  ℓ_t = sg(s_y − τ_y) · s_y                        (reverse KL at the sampled token)
    topk_logits:    I = the teacher's top-k; a = s[I], b = τ[I] (both with a tail bucket when
                    ``add_tail``, else renormalised over I); ℓ = divergence(a, b, α)
    ``student_logits`` [B, T, V] are temperature-scaled already.
    """
    required = required.bool()
    s_y = selective_log_softmax(student_logits, completion_ids)
    token = teacher.token_log_probs
    if bool((required & ~torch.isfinite(token)).any()):
        raise ValueError("Teacher server returned no logprob for a required completion token.")
    if mode == "sampled_token":
        tau_y = torch.where(required, token, torch.zeros_like(token))
        per_token = (s_y - tau_y).detach() * s_y
    elif mode == "topk_logits":
        z = student_logits.float()
        s_k = z.gather(-1, teacher.topk_ids) - torch.logsumexp(z, dim=-1, keepdim=True)
        present = torch.isfinite(teacher.topk_log_probs) & required.unsqueeze(-1)
        s_k = torch.where(present, s_k, torch.full_like(s_k, _NO_VALUE))
        tau_k = torch.where(present, teacher.topk_log_probs, torch.full_like(s_k, _NO_VALUE))
        if add_tail:
            per_token = divergence(_append_tail(s_k), _append_tail(tau_k), alpha)
        else:
            per_token = topk_renormalised_divergence(s_k, tau_k, alpha)
    else:
        raise ValueError(
            f"use_teacher_server supports distillation_mode sampled_token or topk_logits, got {mode!r}"
        )
    return SelfDistillationTerms(torch.where(required, per_token, torch.zeros_like(per_token)), s_y)
