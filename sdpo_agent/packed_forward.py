"""Prefix-shared forwards with our own activation checkpointing.

A training batch is ``num_generations`` completions per prompt, and SDPO's teacher contexts
repeat too (every failed sibling gets the same demonstration). ``PackedLayout`` lays a
batch out as its *distinct* prefixes [D, P] followed by every row's completion inputs
[B, S] on one flat token axis: projections and MLPs run once per distinct prefix token,
and each completion attends to its own prefix's keys. The hidden states that predict the
completion tokens are the same as a full forward's up to float rounding.

Under gradient checkpointing, ``packed_hidden`` checkpoints per layer itself (a prefix
computed once must also be recomputed once, which the library's per-layer checkpointing of
a cached forward cannot do): the forward runs without a graph and keeps each layer's input;
the backward recomputes one layer at a time and back-propagates through it. A forward
whose layer inputs were already computed while sampling (``LayerRecord``) skips straight to
the backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoder import DecoderView, repeat_kv


def distinct_rows(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(first row of each distinct (ids, mask) row, owner[row] = index of its distinct row)."""
    key = torch.cat([ids, mask.to(ids.dtype)], dim=1).tolist()
    position: dict[tuple[int, ...], int] = {}
    owner = [position.setdefault(tuple(row), len(position)) for row in key]
    first = [0] * len(position)
    for row in reversed(range(len(owner))):
        first[owner[row]] = row
    return torch.tensor(first, device=ids.device), torch.tensor(owner, device=ids.device)


@dataclass
class PackedLayout:
    """Distinct left-padded prefixes and per-row completion inputs on one token axis.

    Flat order: ``prefix_ids`` row-major (D·P tokens), then ``suffix_ids`` row-major (B·S
    tokens). The suffix holds the completion tokens but the last (whose output predicts
    nothing that is scored).
    """

    prefix_rows: Tensor  # [D] the batch row each distinct prefix was taken from
    prefix_ids: Tensor  # [D, P]
    prefix_mask: Tensor  # [D, P]
    owner: Tensor  # [B] -> distinct prefix
    suffix_ids: Tensor  # [B, S]
    positions: Tensor  # [D·P + B·S]
    prefix_attention: Tensor  # bool [D, 1, P, P]
    suffix_attention: Tensor  # bool [B, 1, S, P + S]

    @classmethod
    def build(
        cls, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, *, share_prefixes: bool = True
    ) -> PackedLayout:
        """Rows b: left-padded ``prompt_ids[b]`` (mask ``prompt_mask[b]``) then ``completion_ids[b]``."""
        if prompt_ids.shape[1] < 1 or completion_ids.shape[1] < 1:
            raise ValueError("a packed forward needs at least one prompt column and one completion token")
        if share_prefixes:
            first, owner = distinct_rows(prompt_ids, prompt_mask)
        else:
            first = owner = torch.arange(prompt_ids.shape[0], device=prompt_ids.device)
        return cls.from_parts(prompt_ids, prompt_mask, first, owner, completion_ids[:, :-1])

    @classmethod
    def from_parts(
        cls, prompt_ids: Tensor, prompt_mask: Tensor, first: Tensor, owner: Tensor, suffix_ids: Tensor
    ) -> PackedLayout:
        """Distinct prefixes ``prompt_ids[first]``; row b's prefix is ``owner[b]``; suffix inputs [B, S]."""
        device = prompt_ids.device
        prefix_ids, prefix_mask = prompt_ids[first], prompt_mask[first]
        p, s = prefix_ids.shape[1], suffix_ids.shape[1]
        valid = prefix_mask.bool()
        prefix_positions = (prefix_mask.long().cumsum(-1) - 1).clamp(min=0)
        lengths = prefix_mask.long().sum(-1)
        suffix_positions = lengths[owner].unsqueeze(1) + torch.arange(s, device=device)
        causal = torch.ones(p, p, dtype=torch.bool, device=device).tril()
        eye = torch.eye(p, dtype=torch.bool, device=device)
        # A padding query sees itself, so no softmax row is empty (NaN would leak through 0·NaN).
        prefix_attention = ((causal & valid[:, None, :]) | eye).unsqueeze(1)
        own_prefix = valid[owner][:, None, :].expand(-1, s, -1)
        suffix_causal = torch.ones(s, s, dtype=torch.bool, device=device).tril().expand(len(owner), -1, -1)
        suffix_attention = torch.cat([own_prefix, suffix_causal], dim=2).unsqueeze(1)
        return cls(
            prefix_rows=first,
            prefix_ids=prefix_ids,
            prefix_mask=prefix_mask,
            owner=owner,
            suffix_ids=suffix_ids,
            positions=torch.cat([prefix_positions.reshape(-1), suffix_positions.reshape(-1)]),
            prefix_attention=prefix_attention,
            suffix_attention=suffix_attention,
        )

    @property
    def num_prefix_tokens(self) -> int:
        return self.prefix_ids.numel()

    def flat_ids(self) -> Tensor:
        return torch.cat([self.prefix_ids.reshape(-1), self.suffix_ids.reshape(-1)])

    def completion_rows(self, hidden: Tensor) -> Tensor:
        """[B, S + 1, d]: per row, the last prefix position then its suffix positions (row t
        predicts completion token t)."""
        d, p = self.prefix_ids.shape
        b, s = self.suffix_ids.shape
        last = hidden[: d * p].view(d, p, -1)[self.owner, -1:]
        return torch.cat([last, hidden[d * p :].view(b, s, -1)], dim=1)


class PackedAttention:
    """Causal attention within each distinct prefix; each row's suffix sees its own prefix."""

    def __init__(self, view: DecoderView, layout: PackedLayout) -> None:
        self.view = view
        self.layout = layout

    def __call__(self, index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        view, layout = self.view, self.layout
        d, p = layout.prefix_ids.shape
        b, s = layout.suffix_ids.shape
        n = d * p
        heads, kv_heads, hd = view.num_heads, view.num_kv_heads, view.head_dim
        qp = q[:n].view(d, p, heads, hd).transpose(1, 2)
        kp = k[:n].view(d, p, kv_heads, hd).transpose(1, 2)
        vp = v[:n].view(d, p, kv_heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            qp,
            repeat_kv(kp, view.kv_groups),
            repeat_kv(vp, view.kv_groups),
            attn_mask=layout.prefix_attention,
            scale=view.scaling,
        )
        parts = [out.transpose(1, 2).reshape(n, heads * hd)]
        if s:
            qs = q[n:].view(b, s, heads, hd).transpose(1, 2)
            ks = torch.cat([kp[layout.owner], k[n:].view(b, s, kv_heads, hd).transpose(1, 2)], dim=2)
            vs = torch.cat([vp[layout.owner], v[n:].view(b, s, kv_heads, hd).transpose(1, 2)], dim=2)
            out = F.scaled_dot_product_attention(
                qs,
                repeat_kv(ks, view.kv_groups),
                repeat_kv(vs, view.kv_groups),
                attn_mask=layout.suffix_attention,
                scale=view.scaling,
            )
            parts.append(out.transpose(1, 2).reshape(b * s, heads * hd))
        return torch.cat(parts)


class LayerRecord:
    """Inputs of every decoder layer (the last entry: the final layer's output) for a packed
    layout's flat tokens, computed earlier with the same weights (while sampling).

    Held as distinct-prefix and per-row suffix parts; ``self[i]`` assembles layer i's flat
    input when the backward reaches it, so only one layer's copy exists at a time.
    """

    def __init__(
        self, prefix: Sequence[Tensor], suffix: Sequence[Tensor], prefix_index: Tensor, rows: Tensor
    ):
        if len(prefix) != len(suffix):
            raise ValueError("prefix and suffix records cover different numbers of layers")
        self.prefix, self.suffix = prefix, suffix
        self.prefix_index, self.rows = prefix_index, rows

    def __len__(self) -> int:
        return len(self.prefix)

    def __getitem__(self, index: int) -> Tensor:
        prefix, suffix = self.prefix[index][self.prefix_index], self.suffix[index][self.rows]
        return torch.cat([prefix.reshape(-1, prefix.shape[-1]), suffix.reshape(-1, suffix.shape[-1])])


class _LayerRunner:
    def __init__(self, view: DecoderView, layout: PackedLayout, cos: Tensor, sin: Tensor) -> None:
        self.view, self.cos, self.sin = view, cos, sin
        self.attend = PackedAttention(view, layout)
        self.num_layers = len(view.layers)

    def __call__(self, index: int, h: Tensor) -> Tensor:
        return self.view.layer(index, h, self.cos, self.sin, self.attend)


class _CheckpointedLayers(torch.autograd.Function):
    """h_L from h_0 without a graph; backward recomputes one layer at a time.

    Parameter gradients accumulate inside ``backward`` (as in reentrant checkpointing); the
    function returns the gradient for h_0, from which the embedding's flows as usual.
    """

    @staticmethod
    def forward(ctx, runner: _LayerRunner, record: LayerRecord | None, h0: Tensor) -> Tensor:
        if record is not None:
            inputs, out = record, record[len(record) - 1]
        else:
            inputs, h = [], h0.detach()
            for index in range(runner.num_layers):
                inputs.append(h)
                h = runner(index, h)
            out = h
        ctx.runner, ctx.inputs = runner, inputs
        ctx.autocast = _autocast_state(h0.device.type)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        runner, inputs = ctx.runner, ctx.inputs
        for index in reversed(range(runner.num_layers)):
            x = inputs[index].detach().requires_grad_(True)
            if isinstance(inputs, list):
                inputs[index] = None  # freed as soon as its layer is done
            with torch.enable_grad(), _autocast(x.device.type, ctx.autocast):
                y = runner(index, x)
            torch.autograd.backward(y, grad)
            grad = x.grad
        ctx.runner = ctx.inputs = None
        return None, None, grad


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _autocast(device_type: str, state: tuple[bool, torch.dtype]):
    enabled, dtype = state
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


def packed_hidden(
    view: DecoderView, layout: PackedLayout, *, checkpoint: bool, record: LayerRecord | None = None
) -> Tensor:
    """Final hidden states (before the model's last norm) of every flat token [N, d].

    ``checkpoint`` (with gradients enabled): keep only layer inputs and recompute in
    backward; ``record``: those inputs, already computed with the same weights.
    """
    h0 = view.embed(layout.flat_ids())
    cos, sin = view.rope(h0, layout.positions)
    runner = _LayerRunner(view, layout, cos, sin)
    if record is not None or (checkpoint and torch.is_grad_enabled()):
        if not torch.is_grad_enabled():
            return record[len(record) - 1]
        return _CheckpointedLayers.apply(runner, record, h0)
    h = h0
    for index in range(runner.num_layers):
        h = runner(index, h)
    return h


def packed_completion_logits(
    view: DecoderView,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    *,
    checkpoint: bool,
    record: LayerRecord | None = None,
    layout: PackedLayout | None = None,
) -> Tensor:
    """Logits [B, C, V] predicting each of ``completion_ids`` [B, C] after its left-padded prompt."""
    layout = layout or PackedLayout.build(prompt_ids, prompt_mask, completion_ids)
    hidden = packed_hidden(view, layout, checkpoint=checkpoint, record=record)
    return view.logits(layout.completion_rows(hidden))


__all__ = [
    "LayerRecord",
    "PackedAttention",
    "PackedLayout",
    "distinct_rows",
    "packed_completion_logits",
    "packed_hidden",
]
