"""The decode step with its projections fused: one matrix product for q|k|v, one for gate|up.

At RL batch sizes a decode step of a small model is dispatch-bound: for the ``tiny`` model
eight rows × 64 features, every operator costs microseconds of overhead and next to nothing
of arithmetic. ``DecoderView.layer`` calls the model's own modules (so LoRA adapters come
along); this layer calls ``F.linear`` on concatenated weights instead, and rotates q and k
in one go, ``rotate_half(x)·sin`` written as ``roll(x, hd/2)·sin±`` with the sign folded
into the table. Per layer that is 4 matrix products instead of 7, one rotation instead of
two, and no module calls (the norms and SiLU called as functions): the tiny model's decode
forward went from 0.47 to 0.36 ms a step, then a 128-token batch from 0.064 to 0.058 s with
the direct calls.

Each output column of a product is the same dot product whether its matrix is concatenated
or not, and ``(−a)·s = a·(−s)`` exactly. Transcendental operators (the activation, the head
norms) get contiguous inputs, as in the view: on a strided slice whose rows are not a whole
number of vectors, a CPU kernel finishes each row on a scalar path that rounds differently.
So the results are bitwise the view's (checked once per model on layer 0; where a BLAS
disagrees, the view's layer is used), the layer record taken while sampling stays the
training forward's, and with ``match_generate_sampling`` the tokens stay ``generate()``'s.

Built per generation batch from the current weights (a concatenation of the attention and
MLP input matrices, the size of the layers' weights, freed with the batch), only for views
whose projections are plain ``nn.Linear`` (not LoRA layers, not ``PackedLinear``) and whose
MLP is ``down(act(gate(x)) · up(x))``.

``pack=True`` (float32 on a CPU with oneDNN, ``pack_decode_weights``): the large fused
matrices and the LM head are multiplied through oneDNN-packed copies instead (``packed_linear``),
built layer by layer from the concatenations. That keeps the fusion (4 products a layer, the
key and value projections packed with the query's) where a packed copy of the model's own
modules would run 7 module calls; the results are then the view's up to the order of float32
additions, as with any packed product, and the layer record is kept as for ``PackedLinear``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .decoder import Attend, DecoderView, rms_norm
from .packed_linear import MIN_PACKED_ELEMENTS, pack_matrix, packed_product

logger = logging.getLogger(__name__)

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
# model -> whether its fused layers reproduced the view's bitwise (checked once).
_AGREES: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def signed_sin(sin: Tensor) -> Tensor:
    """sin [.., hd] with its first half negated: ``rotate_half(x)·sin == roll(x, hd/2)·signed_sin``."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _linear_parts(modules: list[nn.Module]) -> tuple[Tensor, Tensor | None] | None:
    """The concatenated weight (and bias) of plain linear layers, or None."""
    if not all(type(m) is nn.Linear for m in modules):
        return None
    if len({m.weight.dtype for m in modules}) != 1:
        return None
    biases = [m.bias for m in modules]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    weight = (
        torch.cat([m.weight.detach() for m in modules]) if len(modules) > 1 else modules[0].weight.detach()
    )
    bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
    return weight, bias


class Product:
    """``F.linear(x, weight, bias)``, or the same product through a oneDNN-packed ``weight``."""

    __slots__ = ("bias", "out_features", "packed", "weight")

    def __init__(self, weight: Tensor, bias: Tensor | None, pack: bool = False) -> None:
        self.out_features, self.bias = weight.shape[0], bias
        self.packed = pack_matrix(weight) if pack else None
        self.weight = None if pack else weight

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return packed_product(x, self.packed, self.bias, self.out_features)
        return F.linear(x, self.weight, self.bias)


def _worth_packing(weight: Tensor) -> bool:
    return weight.dtype is torch.float32 and weight.numel() >= MIN_PACKED_ELEMENTS[torch.float32]


def _plain_layer(layer: nn.Module) -> bool:
    attn, mlp = layer.self_attn, layer.mlp
    if not all(hasattr(attn, n) for n in _PROJECTIONS) or not all(hasattr(mlp, n) for n in _MLP):
        return False
    modules = [getattr(attn, n) for n in _PROJECTIONS] + [getattr(mlp, n) for n in _MLP]
    return callable(getattr(mlp, "act_fn", None)) and all(type(m) is nn.Linear for m in modules)


def _layer_products(layer: nn.Module, pack: bool) -> dict[str, Product] | None:
    attn, mlp = layer.self_attn, layer.mlp
    groups = {
        "qkv": [attn.q_proj, attn.k_proj, attn.v_proj],
        "o": [attn.o_proj],
        "gate_up": [mlp.gate_proj, mlp.up_proj],
        "down": [mlp.down_proj],
    }
    products = {}
    for name, modules in groups.items():
        parts = _linear_parts(modules)
        if parts is None:
            return None
        weight, bias = parts
        products[name] = Product(weight, bias, pack=pack and _worth_packing(weight))
    return products


def _rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """``apply_rope(x, cos[:, 0], sin[:, 0])`` for x [N, heads, hd] and cos, sin± [N, 1, hd], bitwise."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_signed


def _norm(norm: nn.Module) -> Callable[[Tensor], Tensor]:
    """``rms_norm(norm, ·)`` for inputs in the norm's dtype, without the per-call dispatch."""
    if norm.weight.dtype is not torch.float32:
        return norm
    weight, shape, eps = norm.weight, tuple(norm.weight.shape), norm.variance_epsilon
    return lambda x: torch.rms_norm(x, shape, weight, eps)


def _activation(act_fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """transformers' SiLU module is ``F.silu``; calling it directly skips a module call."""
    is_silu = isinstance(act_fn, nn.SiLU) or type(act_fn).__name__ == "SiLUActivation"
    return F.silu if is_silu else act_fn


class FusedDecodeLayers:
    """Per layer: q|k|v, o, gate|up and down as ``Product``s; see the module docstring."""

    def __init__(
        self, view: DecoderView, parts: list[dict[str, Product]], head: Product | None = None
    ) -> None:
        self.view = view
        self.parts = parts
        self.head = head
        self.intermediate = [p["gate_up"].out_features // 2 for p in parts]
        self.norms = [
            (_norm(layer.input_layernorm), _norm(layer.post_attention_layernorm)) for layer in view.layers
        ]
        self.activations = [_activation(layer.mlp.act_fn) for layer in view.layers]

    @staticmethod
    def supported(view: DecoderView) -> bool:
        """Whether ``of(view)`` can fuse (plain projections, not known to disagree here)."""
        return _AGREES.get(view.model, True) and all(_plain_layer(layer) for layer in view.layers)

    @classmethod
    @torch.no_grad()
    def of(cls, view: DecoderView, pack: bool = False) -> FusedDecodeLayers | None:
        """The fused layers of ``view``'s current weights (``pack``: large products oneDNN-packed,
        and the LM head with them); None when a layer is not plain."""
        if not all(_plain_layer(layer) for layer in view.layers):
            return None
        if view.model not in _AGREES:  # on plain products: what fusion itself changes
            first = _layer_products(view.layers[0], pack=False)
            _AGREES[view.model] = first is not None and cls(view, [first]).agrees_with_view()
            if not _AGREES[view.model]:
                logger.info("fused decode layers off: not bitwise equal to the model's layers here")
        if not _AGREES[view.model]:
            return None
        parts = []
        for layer in view.layers:  # one layer's concatenations at a time: packing frees them
            products = _layer_products(layer, pack)
            if products is None:
                return None
            parts.append(products)
        head = view.lm_head
        plain_head = type(head) is nn.Linear and _worth_packing(head.weight)
        head_bias = None if head.bias is None else head.bias.detach()
        head_product = Product(head.weight.detach(), head_bias, pack=True) if pack and plain_head else None
        return cls(view, parts, head_product)

    def agrees_with_view(self) -> bool:
        """Whether layer 0 gives bitwise the view's result on a random 8-row step."""
        view = self.view
        weight = view.lm_head.weight
        generator = torch.Generator().manual_seed(0)
        h = torch.randn(8, view.hidden_size, generator=generator).to(weight.device, weight.dtype)
        angle = torch.rand(8, view.head_dim, generator=generator).to(weight.device, weight.dtype)
        cos, sin = angle.cos(), angle.sin()
        rotary = cos.unsqueeze(1), signed_sin(sin).unsqueeze(1)

        def attend(index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # any function of q, k, v
            return (
                q + k.repeat_interleave(view.kv_groups, 1) * v.repeat_interleave(view.kv_groups, 1)
            ).flatten(1)

        return torch.equal(self.layer(0, h, *rotary, attend), view.layer(0, h, cos, sin, attend))

    def layer(self, index: int, h: Tensor, cos: Tensor, sin_signed: Tensor, attend: Attend) -> Tensor:
        """``view.layer(index, h, c, s, attend)`` with ``cos = c.unsqueeze(1)`` and
        ``sin_signed = signed_sin(s).unsqueeze(1)`` ([N, 1, hd], shared by all layers)."""
        view, part = self.view, self.parts[index]
        layer = view.layers[index]
        input_norm, post_attention_norm = self.norms[index]
        n, heads, kv = h.shape[0], view.num_heads, view.num_kv_heads
        qkv = part["qkv"](input_norm(h))
        qkv = qkv.view(n, heads + 2 * kv, view.head_dim)
        v = qkv[:, heads + kv :]
        if view.has_qk_norm:  # per-head norms first, each with its own weight
            attn = layer.self_attn
            q = _rope(rms_norm(attn.q_norm, qkv[:, :heads].contiguous()), cos, sin_signed)
            k = _rope(rms_norm(attn.k_norm, qkv[:, heads : heads + kv].contiguous()), cos, sin_signed)
        else:
            qk = _rope(qkv[:, : heads + kv], cos, sin_signed)
            q, k = qk[:, :heads], qk[:, heads:]
        h = h + part["o"](attend(index, q, k, v))
        gate, up = part["gate_up"](post_attention_norm(h)).split(self.intermediate[index], dim=-1)
        return h + part["down"](self.activations[index](gate.contiguous()) * up)

    def logits(self, h: Tensor) -> Tensor:
        """``view.logits(h)``, through the packed LM head when there is one."""
        if self.head is None:
            return self.view.logits(h)
        return self.head(rms_norm(self.view.inner.norm, h))


__all__ = ["FusedDecodeLayers", "Product", "signed_sin"]
