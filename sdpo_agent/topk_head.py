"""Top-k distillation without a dense backward through the LM head.

With ``distillation_topk=K`` and no tail bucket, each side's distribution is renormalised
over the student's K largest logits, so the full-vocabulary logsumexps cancel:

    a_k = z_S[I_k] − logsumexp_j z_S[I_j],    b_k = z_T[I_k] − logsumexp_j z_T[I_j]

The loss therefore depends on K student logits per position, and its gradient on the logits
is zero everywhere else. ``topk_student`` computes the logits once without a graph (to pick
I, and for log π(y)), and ``SparseHeadLogits`` back-propagates from the K picked logits
into the final hidden states and the K picked rows of the head's weight: about K·d instead
of V·d multiply-adds per position, and no [B, T, V] gradient in memory. Values and
gradients equal the dense computation's up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .decoder import DecoderView, rms_norm

# Positions per chunk in the backward: bounds the [n, K, d] gathered head rows.
_CHUNK_ELEMENTS = 1 << 22


@dataclass
class TopKSupport:
    """What ``topk_student`` computes from the full logits, taken while sampling instead: the
    decode step computed the same logits (same weights, the layer record's numerics) for every
    completion position, so the support and log π(y) cost a ``topk`` per step there and spare
    the training step a full LM-head pass over the vocabulary."""

    values: Tensor  # [B, T, K] temperature-scaled logits, torch.topk order
    indices: Tensor  # [B, T, K]
    token_log_probs: Tensor  # [B, T] log π(y_t) at that temperature


@dataclass
class TopKStudent:
    """The student's side of top-k distillation (temperature already applied)."""

    topk_logits: Tensor  # [B, T, K], differentiable
    indices: Tensor  # [B, T, K], torch.topk order
    token_log_probs: Tensor  # [B, T] log π(y_t), no graph


class SparseHeadLogits(torch.autograd.Function):
    """z[I] = (x · W[I]) / τ with given values; backward touches only the K rows per position."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, indices: Tensor, values: Tensor, temperature: float):
        ctx.save_for_backward(x, weight, indices)
        ctx.temperature = temperature
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, indices = ctx.saved_tensors
        d = x.shape[-1]
        flat_x, flat_i = x.reshape(-1, d), indices.reshape(-1, indices.shape[-1])
        flat_g = grad.reshape(flat_i.shape).to(weight.dtype) / ctx.temperature
        grad_x = torch.empty_like(flat_x) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        step = max(1, _CHUNK_ELEMENTS // max(1, flat_i.shape[1] * d))
        for start in range(0, flat_i.shape[0], step):
            rows = slice(start, start + step)
            g, idx = flat_g[rows], flat_i[rows]
            if grad_x is not None:
                grad_x[rows] = torch.einsum("nk,nkd->nd", g, weight[idx])
            if grad_w is not None:
                grad_w.index_add_(
                    0, idx.reshape(-1), (g.unsqueeze(-1) * flat_x[rows].unsqueeze(1)).reshape(-1, d)
                )
        return (None if grad_x is None else grad_x.view_as(x)), grad_w, None, None, None


def sparse_head_supported(view: DecoderView) -> bool:
    head = view.lm_head
    return type(head) is nn.Linear and head.bias is None


def topk_student(
    view: DecoderView,
    hidden: Tensor,
    completion_ids: Tensor,
    k: int,
    temperature: float = 1.0,
    support: TopKSupport | None = None,
) -> TopKStudent:
    """Pick the student's top-k support from full logits computed without a graph (or take the
    ``support`` recorded while sampling), and return the K logits per position as a
    differentiable function of ``hidden`` [B, T, d]."""
    x = rms_norm(view.inner.norm, hidden)
    if support is not None:
        values, indices, token_log_probs = support.values, support.indices, support.token_log_probs
    else:
        with torch.no_grad():
            logits = view.lm_head(x)
            if temperature != 1.0:
                logits = logits / temperature
            values, indices = torch.topk(logits, k=min(int(k), logits.shape[-1]), dim=-1)
            picked = logits.gather(-1, completion_ids.long().unsqueeze(-1)).squeeze(-1)
            token_log_probs = picked - torch.logsumexp(logits, dim=-1)
            del logits
    topk_logits = SparseHeadLogits.apply(x, view.lm_head.weight, indices, values.to(x.dtype), temperature)
    return TopKStudent(topk_logits, indices, token_log_probs)


__all__ = ["SparseHeadLogits", "TopKStudent", "TopKSupport", "sparse_head_supported", "topk_student"]
