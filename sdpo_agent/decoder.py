"""A functional view of Llama-family decoders: the model's own modules, our own layer loop.

The trainer's hot paths need the layer math without the per-call machinery of a Hugging Face
forward (mask builders, cache objects, output records): sampling with a static KV cache
(``fast_generation``) and prefix-shared, self-checkpointed training and teacher forwards
(``packed_forward``). ``DecoderView.of(model)`` gives that view for the decoder-only
families whose layers are exactly

    h ← h + o_proj(attention(rope(q_proj(n₁(h))), rope(k_proj(n₁(h))), v_proj(n₁(h))))
    h ← h + mlp(n₂(h))                                            (Qwen3: q/k head norms)

and returns None for anything else, so callers fall back to ``model(...)``. The view calls
the model's own submodules (norms, projections, MLP, rotary embedding), so LoRA adapters
and rope scaling come along; a view is only handed out after a self-check against the
model's own forward on a small padded batch.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# attend(layer_index, q[N, H, hd], k[N, KV, hd], v[N, KV, hd]) -> attention output [N, H·hd]
Attend = Callable[[int, Tensor, Tensor, Tensor], Tensor]

_VIEWS: weakref.WeakKeyDictionary[nn.Module, DecoderView | None] = weakref.WeakKeyDictionary()


def base_model(model: nn.Module) -> nn.Module:
    """The ``PreTrainedModel`` under a PEFT wrapper (LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x[N, heads, hd] rotated by cos/sin[N, hd] (the same arithmetic as HF's apply_rotary_pos_emb)."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def rms_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(x)`` for the families' RMSNorm (w · x / sqrt(mean x² + ε)), fused for float32;
    other dtypes keep the module's own upcast-then-cast arithmetic."""
    if x.dtype is torch.float32 and norm.weight.dtype is torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    return norm(x)


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """[B, KV, T, hd] -> [B, KV·groups, T, hd] (grouped-query attention)."""
    if groups == 1:
        return x
    b, kv, t, hd = x.shape
    return x[:, :, None].expand(b, kv, groups, t, hd).reshape(b, kv * groups, t, hd)


class DecoderView:
    """Embedding, rotary tables, one decoder layer on flat tokens, and the LM head."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        base = base_model(model)
        self.inner = base.model
        self.lm_head = base.lm_head
        self.layers = list(self.inner.layers)
        config = base.config
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.kv_groups = self.num_heads // self.num_kv_heads
        self.scaling = attn.scaling
        self.hidden_size = config.hidden_size
        self.has_qk_norm = hasattr(attn, "q_norm")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def of(cls, model: nn.Module) -> DecoderView | None:
        """The verified view of ``model``, or None when it is not a supported decoder."""
        if model in _VIEWS:
            return _VIEWS[model]
        view = None
        reason = unsupported_reason(model)
        if reason is None:
            view = cls(model)
            error = view.self_check()
            if error is not None:
                reason, view = f"self-check against the model's forward failed: {error}", None
        if reason is not None:
            logger.info("fast decoder path off for %s: %s", type(base_model(model)).__name__, reason)
        _VIEWS[model] = view
        return view

    @torch.no_grad()
    def self_check(self) -> str | None:
        """Compare logits with the model's own forward on a left-padded two-row batch."""
        from .packed_forward import PackedLayout, packed_hidden

        device = self.lm_head.weight.device
        vocab = self.lm_head.weight.shape[0]
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (2, 9), generator=generator).to(device)
        mask = torch.ones_like(ids)
        mask[1, :3] = 0
        was_training = self.model.training
        self.model.eval()
        try:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            expected = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            layout = PackedLayout.build(ids[:, :5], mask[:, :5], ids[:, 5:], share_prefixes=False)
            hidden = packed_hidden(self, layout, checkpoint=False)
            got = self.lm_head(self.inner.norm(layout.completion_rows(hidden)))
        finally:
            self.model.train(was_training)
        want = expected[:, 4:8].float()
        valid = torch.isfinite(want).all() and torch.isfinite(got).all()
        err = (got.float() - want).abs().max().item() if valid else float("nan")
        scale = 1.0 + want.abs().max().item()
        tolerance = (1e-4 if self.lm_head.weight.dtype == torch.float32 else 3e-2) * scale
        return None if err <= tolerance else f"max |logit difference| {err:.3g} > {tolerance:.3g}"

    # -- the math ----------------------------------------------------------------------------------
    def embed(self, ids: Tensor) -> Tensor:
        return self.inner.embed_tokens(ids)

    def rope(self, like: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin [N, hd] for flat positions [N]."""
        cos, sin = self.inner.rotary_emb(like, position_ids=positions.unsqueeze(0))
        return cos[0], sin[0]

    def rope_table(self, like: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """cos, sin [length, hd] for positions 0..length-1 (index them instead of recomputing)."""
        return self.rope(like, torch.arange(length, device=like.device))

    def layer(self, index: int, h: Tensor, cos: Tensor, sin: Tensor, attend: Attend) -> Tensor:
        """One decoder layer on flat tokens h[N, d]; ``attend`` decides who sees whom."""
        layer = self.layers[index]
        attn = layer.self_attn
        n = h.shape[0]
        x = rms_norm(layer.input_layernorm, h)
        q = attn.q_proj(x).view(n, self.num_heads, self.head_dim)
        k = attn.k_proj(x).view(n, self.num_kv_heads, self.head_dim)
        v = attn.v_proj(x).view(n, self.num_kv_heads, self.head_dim)
        if self.has_qk_norm:
            q, k = rms_norm(attn.q_norm, q), rms_norm(attn.k_norm, k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        h = h + attn.o_proj(attend(index, q, k, v))
        return h + layer.mlp(rms_norm(layer.post_attention_layernorm, h))

    def logits(self, h: Tensor) -> Tensor:
        return self.lm_head(rms_norm(self.inner.norm, h))

    def parameters_dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot have a view (None when it can)."""
    from transformers import PreTrainedModel

    base = base_model(model)
    if not isinstance(base, PreTrainedModel):
        return f"{type(base).__name__} is not a transformers PreTrainedModel"
    config = base.config
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return f"model_type {getattr(config, 'model_type', None)!r} is not one of {SUPPORTED_MODEL_TYPES}"
    inner = getattr(base, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, name) for name in needed) or not hasattr(base, "lm_head"):
        return "unexpected module layout"
    if len(inner.layers) != config.num_hidden_layers:
        return "layer count differs from the config"
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    if any(getattr(layer.self_attn, "sliding_window", None) for layer in inner.layers):
        return "sliding-window attention"
    if float(getattr(config, "attention_dropout", 0.0) or 0.0) > 0.0:
        return "attention dropout"
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type in ("dynamic", "longrope"):
        return f"rope_type {rope_type!r} rescales with the sequence length"
    norms = [inner.norm]
    for layer in inner.layers:
        attn = getattr(layer, "self_attn", None)
        parts = ("q_proj", "k_proj", "v_proj", "o_proj", "scaling", "head_dim")
        if attn is None or not all(hasattr(attn, p) for p in parts):
            return "unexpected attention module"
        if not all(hasattr(layer, p) for p in ("input_layernorm", "post_attention_layernorm", "mlp")):
            return "unexpected decoder layer"
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
        norms += [getattr(attn, name) for name in ("q_norm", "k_norm") if hasattr(attn, name)]
    if not all(type(n).__name__.endswith("RMSNorm") and hasattr(n, "variance_epsilon") for n in norms):
        return "a norm that is not the standard RMSNorm"
    return None


def fast_path_allowed(model: nn.Module) -> bool:
    """Our own forward may replace ``model(...)``: one process (DDP/FSDP/DeepSpeed hook
    their own forward) and no wrapper between the trainer and the PreTrainedModel but PEFT."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return False
    return not isinstance(model, nn.parallel.DistributedDataParallel)


def view_for(model: nn.Module) -> DecoderView | None:
    """The verified view when the fast path is allowed for ``model``, else None."""
    return DecoderView.of(model) if fast_path_allowed(model) else None


__all__ = ["Attend", "DecoderView", "apply_rope", "base_model", "repeat_kv", "view_for"]
