"""Linear layers whose weight is pre-packed for oneDNN: the decode steps' matrix products on a CPU.

A decode step multiplies a handful of rows (the generation batch) by every weight matrix of
the model. For large matrices, that product is limited by how the weight streams through
the cache, and oneDNN's blocked layout streams it faster than the plain row-major matrix
the training step keeps: measured on this project's 2-core Xeon, one thread, 8 rows,
smollm2-135m's MLP matrices 1.8× and its 49k-row LM head 2.6× faster in float32, 1.5–2×
in bfloat16 (``bench/trainer_step.py``). Packing costs one reorder of the weights per
generation batch, and the packed copy exists only while sampling (``sampler_copy``).

Below ``MIN_PACKED_ELEMENTS`` the plain product is faster (oneDNN's per-call overhead
dominates), so small matrices stay as they are. Packing changes only the order of the
float32 (or bfloat16) additions, as a different BLAS kernel would.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .compact_weights import stand_in

# Smaller matrices are faster unpacked (measured, see above): 2^18 elements (1 MiB) in float32;
# in bfloat16 oneDNN wins from about 2^16 (smollm2's key/value projections, 1.6x).
MIN_PACKED_ELEMENTS = {torch.float32: 1 << 18, torch.bfloat16: 1 << 16}


def packing_available(dtype: torch.dtype, device: torch.device | str) -> bool:
    """oneDNN can pack ``dtype`` weights on ``device`` (a CPU; bfloat16 needs bf16 instructions)."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    if dtype is torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype is torch.float32


def packable(module: nn.Module, dtype: torch.dtype, min_elements: int | None = None) -> bool:
    """A plain ``nn.Linear`` (not a subclass such as a LoRA layer) large enough to gain in ``dtype``."""
    if min_elements is None:
        min_elements = MIN_PACKED_ELEMENTS.get(dtype, MIN_PACKED_ELEMENTS[torch.float32])
    return type(module) is nn.Linear and module.weight.numel() >= min_elements


def pack_matrix(weight: Tensor, rows_hint: int = 8) -> Tensor:
    """``weight`` [out, in] in oneDNN's blocked layout, for products with about ``rows_hint`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)


def packed_product(x: Tensor, packed: Tensor, bias: Tensor | None, out_features: int) -> Tensor:
    """``F.linear(x, weight, bias)`` through ``packed = pack_matrix(weight)``; ``x`` in its dtype."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
    return out.view(*x.shape[:-1], out_features)


class PackedLinear(nn.Module):
    """``F.linear(x, weight, bias)`` with ``weight`` held in oneDNN's packed layout.

    ``weight`` is a stride-0 stand-in with the matrix's shape, dtype and device (code that
    reads them keeps working); ``pack`` stores a new value, ``clear`` drops it.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, rows_hint: int = 8) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dtype = dtype
        self.rows_hint = rows_hint
        self.weight = stand_in(linear.weight, dtype)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.packed: Tensor | None = None

    @torch.no_grad()
    def pack(self, weight: Tensor, bias: Tensor | None = None) -> None:
        self.packed = pack_matrix(weight.to(self.dtype), self.rows_hint)
        if bias is not None:
            self.bias = bias.detach().to(self.dtype)

    def clear(self) -> None:
        self.packed = None

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None:
            raise RuntimeError("PackedLinear called before pack()")
        return packed_product(x.to(self.dtype), self.packed, self.bias, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}"


__all__ = [
    "MIN_PACKED_ELEMENTS",
    "PackedLinear",
    "pack_matrix",
    "packable",
    "packed_product",
    "packing_available",
]
