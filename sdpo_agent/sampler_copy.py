"""The sampler's own copy of the policy (low precision, packed weights), and one uniform draw per token.

On a CPU with bfloat16 matrix units (AMX) or a GPU, a decode step in bfloat16 runs several
times faster than in float32 (at RL batch sizes it is a chain of small matrix products).
Training keeps its own dtype; only the sampler reads this copy, the way an inference engine
(vLLM) samples from bfloat16 weights while the trainer holds float32 master weights.

Between batches each parameter of the copy is a stride-0 stand-in, so the copy occupies
memory only while it samples: the training pass that follows reuses those pages, and peak
memory does not grow by a second set of weights. Refilling costs one cast of the weights per
generation batch, a small fraction of the sampling it speeds up.

The sampled tokens are then drawn from the bfloat16 rounding of the policy, not from the
float32 policy the loss differentiates; the trainer treats them as on-policy, as TRL does
with vLLM unless its importance-sampling correction is switched on.

On a CPU the copy's large linear layers can also be oneDNN-packed (``packed_linear``), in
bfloat16 or in the policy's own float32: same arithmetic up to the order of additions, the
decode products 1.5-2.6x faster. A float32 packed copy shares every other parameter with the
policy and holds only the packed matrices, and only while it samples; it serves models whose
layers cannot be fused (LoRA projections), the others pack their fused matrices (``fused_decode``).

``inverse_cdf_sample`` draws a token per row from one uniform number and a cumulative sum
(the fast decoder's default in every dtype). ``torch.multinomial`` (what ``generate`` uses)
draws one exponential variate per vocabulary entry instead, 18 ns each on a CPU: 7 ms per
decode step for 8 rows of a 49k vocabulary against 0.5 ms. Same distribution, other random
numbers: only ``match_generate_sampling=True`` (float32) reproduces ``generate``'s tokens for
a seed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .compact_weights import stand_in
from .packed_linear import PackedLinear, packable


def inverse_cdf_sample(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of ``probs`` [B, V] (non-negative, not necessarily normalised), drawn
    with probability proportional to its entry: the first index whose cumulative sum exceeds
    u·total, u ~ U[0, 1). Entries of probability 0 are never drawn. The sums are stored in
    float64: in float32 a running sum near 1 is rounded to multiples of 6e-8, so a token rarer
    than that gets an interval of width 0 or 6e-8 instead of its probability."""
    cdf = probs.double().cumsum(dim=-1)
    total = cdf[:, -1:]
    if torch.isnan(total).any():
        raise ValueError("probability tensor contains nan (the model's logits are not finite)")
    u = torch.rand(total.shape, device=probs.device, dtype=torch.float64) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total after rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)


class SamplerCopy:
    """``source`` copied in ``dtype``; ``fill()`` before sampling, ``empty()`` after.

    ``pack=True`` (a CPU with oneDNN): the large linear layers of the copy are ``PackedLinear``
    (``packed_linear``), refilled from the source's weights by ``fill()``. With ``dtype`` equal
    to the source's, the other parameters are the source's own tensors (no copy).
    """

    def __init__(self, source: nn.Module, dtype: torch.dtype, pack: bool = False) -> None:
        self.source = source
        self.dtype = dtype
        packed_sources = _packed_layers(source, dtype) if pack else {}
        memo: dict[int, nn.Parameter] = {}
        self.pairs: list[tuple[nn.Parameter, nn.Parameter]] = []
        for param in source.parameters():
            if id(param) not in memo:  # tied weights stay tied
                clone = nn.Parameter(stand_in(param, dtype), requires_grad=False)
                memo[id(param)] = clone
                self.pairs.append((param, clone))
        # Buffers (rotary frequencies) are small and stay in their own dtype.
        self.model = copy.deepcopy(source, memo)
        self.model.requires_grad_(False)
        self.model.eval()
        self.packed: list[tuple[nn.Linear, PackedLinear]] = []
        copies = dict(self.model.named_modules())
        for name, linear in packed_sources.items():
            parent_name, _, attr = name.rpartition(".")
            packed = PackedLinear(linear, dtype)
            setattr(copies[parent_name], attr, packed)
            self.packed.append((linear, packed))
        # A weight read only through packed layers needs no plain copy (a tied one still does).
        still_read = {id(p) for p in self.model.parameters()}
        self.pairs = [(param, clone) for param, clone in self.pairs if id(clone) in still_read]

    @torch.no_grad()
    def fill(self) -> nn.Module:
        """The copy holding ``dtype`` roundings (to nearest) of the source's current weights."""
        for param, clone in self.pairs:
            clone.data = param.detach().to(self.dtype)
        for linear, packed in self.packed:
            packed.pack(linear.weight, linear.bias)
        return self.model

    def empty(self) -> None:
        for param, clone in self.pairs:
            clone.data = stand_in(param, self.dtype)
        for _, packed in self.packed:
            packed.clear()

    def nbytes(self) -> int:
        """Bytes the copy's weights occupy now (a few bytes of stand-ins between batches); a
        parameter shared with the source (same dtype) is not counted."""
        own = sum(
            clone.untyped_storage().nbytes()
            for param, clone in self.pairs
            if clone.untyped_storage().data_ptr() != param.untyped_storage().data_ptr()
        )
        return own + sum(_packed_nbytes(packed) for _, packed in self.packed)


def _packed_layers(model: nn.Module, dtype: torch.dtype) -> dict[str, nn.Linear]:
    return {name: module for name, module in model.named_modules() if packable(module, dtype)}


def _packed_nbytes(layer: PackedLinear) -> int:
    # An opaque oneDNN tensor has no storage to ask; its blocked layout holds the same
    # number of elements as the matrix, up to padding.
    if layer.packed is None:
        return 0
    return layer.weight.numel() * layer.weight.element_size()


__all__ = ["SamplerCopy", "inverse_cdf_sample"]
