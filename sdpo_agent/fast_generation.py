"""Sampling with a static KV cache through ``DecoderView``: the default generation backend.

Why not ``model.generate``: at RL batch sizes a decode step is a few small matrix products
per layer, and ``generate`` adds a growing-cache concatenation, mask construction and
processor bookkeeping to every one of them (on the CPU, a quarter of the step went into
``torch.cat`` alone). Here each distinct prompt is prefilled once, its keys and values
are copied into a preallocated cache per row, and every step writes one column.

Sampling is ``generate``'s: the same logits processors from ``transformers`` in the same
order (repetition penalty, min new tokens, temperature, top-k, top-p, min-p; min new tokens
as an equivalent that writes only the EOS columns), softmax, then one draw per row from
that distribution: by the inverse of its cumulative sum, one uniform number per row, 13x
cheaper than ``torch.multinomial`` on a CPU (``match_generate_sampling=True`` calls
``torch.multinomial`` and reproduces ``generate``'s tokens for a seed); finished rows are
fed the pad token. With the projections
fused (``fused_decode``) a decode step of a small model costs a third less dispatch; with
``pack_decode_weights`` on a CPU the fused matrices are oneDNN-packed for the batch (smollm2-135m:
a 64-token batch of 8 rows 14.4 -> 10.9 s on a 2-core EPYC, against a packed copy of the
unfused modules). With ``generation_dtype`` set it samples like an inference engine instead
(``sampler_copy``): bfloat16 weights, one uniform number per token as in float32.
Configurations it does not cover (other ``generation_kwargs``, beam search, a model without a
view) go to ``TransformersGenerator``.

While sampling it can also keep every layer's input and each completion position's top-k
support for the training step (``rollout_record``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import (
    LogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .compact_weights import LOW_PRECISION_DTYPES
from .decoder import DecoderView, view_for
from .fused_decode import FusedDecodeLayers, signed_sin
from .generation import TransformersGenerator, cut_after_eos, left_pad
from .packed_forward import PackedAttention, PackedLayout, distinct_rows
from .packed_linear import packable, packing_available
from .rollout_record import Recorder, RolloutRecord, SupportRecorder
from .sampler_copy import SamplerCopy, inverse_cdf_sample

# generation_kwargs this backend implements itself; anything else goes to generate().
FAST_GENERATION_KWARGS = frozenset({"min_new_tokens", "do_sample"})


class StaticCacheGenerator:
    """``GenerationBackend`` over a ``DecoderView``; see the module docstring."""

    def __init__(
        self,
        model_getter,
        tokenizer,
        args,
        eos_token_ids: Sequence[int],
        *,
        record_budget_bytes: int | None = 0,
        version_getter=None,
    ) -> None:
        self._model_getter = model_getter
        self.tokenizer = tokenizer
        self.eos_ids = sorted(set(eos_token_ids))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.args = args
        self.fallback = TransformersGenerator(model_getter, tokenizer, args, eos_token_ids)
        kwargs = dict(args.generation_kwargs or {})
        self.min_new_tokens = int(kwargs.get("min_new_tokens") or 0)
        self.supported = (
            getattr(args, "use_fast_decoder", True)
            and set(kwargs) <= FAST_GENERATION_KWARGS
            and kwargs.get("do_sample", True) is not False
            and args.cache_implementation is None
        )
        self.record_budget_bytes = record_budget_bytes
        # With a layer record: also keep each position's top-k support (``TopKSupport``), k > 0.
        self.support_topk = 0
        self._version_getter = version_getter or (lambda: None)
        self.last_record: RolloutRecord | None = None
        self.sampler_dtype = LOW_PRECISION_DTYPES.get(getattr(args, "generation_dtype", None) or "")
        self._sampler_copy: SamplerCopy | None = None

    def close(self) -> None:
        self.last_record, self._sampler_copy = None, None

    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        self.last_record = None
        if not prompt_ids:
            return []
        model = self._model_getter()
        view = view_for(model) if self.supported else None
        if view is None or max_new_tokens < 1:
            return self.fallback.generate(prompt_ids, max_new_tokens)
        pack_fused = self._packs_fused_layers(view)
        sampler = None if pack_fused else self._copy_for(model, view)
        if sampler is not None:
            try:
                copy_view = view_for(sampler.fill())
                if copy_view is not None:
                    # A low-precision copy's layer inputs are not the training forward's.
                    exact = sampler.dtype == view.parameters_dtype()
                    with torch.no_grad():
                        return self._sample(copy_view, prompt_ids, max_new_tokens, keep_record=exact)
            finally:
                sampler.empty()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return self._sample(view, prompt_ids, max_new_tokens, pack=pack_fused)
        finally:
            model.train(was_training)

    def _draw(self, probs: Tensor) -> Tensor:
        if getattr(self.args, "match_generate_sampling", False):
            return torch.multinomial(probs, num_samples=1).squeeze(1)
        return inverse_cdf_sample(probs)  # same distribution, one uniform per row (see sampler_copy)

    def _packs_fused_layers(self, view: DecoderView) -> bool:
        """Float32 sampling with ``pack_decode_weights``: the fused decode layers pack their own
        concatenated matrices (``fused_decode``), so no packed copy of the model is needed."""
        dtype = view.parameters_dtype()
        return (
            self.sampler_dtype in (None, dtype)
            and dtype is torch.float32
            and getattr(self.args, "pack_decode_weights", True)
            and packing_available(dtype, view.lm_head.weight.device)
            and FusedDecodeLayers.supported(view)
        )

    def _copy_for(self, model, view: DecoderView) -> SamplerCopy | None:
        """The sampler's copy of ``model``: in ``generation_dtype`` when set, with packed large
        matrices where oneDNN can pack them (``pack_decode_weights``); None when neither applies."""
        own_dtype = view.parameters_dtype()
        dtype = self.sampler_dtype or own_dtype
        pack = (
            getattr(self.args, "pack_decode_weights", True)
            and packing_available(dtype, view.lm_head.weight.device)
            and any(packable(module, dtype) for module in model.modules())
        )
        if not pack and dtype == own_dtype:
            return None
        cached = self._sampler_copy
        if (
            cached is None
            or cached.source is not model
            or cached.dtype != dtype
            or bool(cached.packed) != pack
        ):
            self._sampler_copy = SamplerCopy(model, dtype, pack=pack)
        return self._sampler_copy

    # -- the loop ----------------------------------------------------------------------------------
    def _processors(self, prompt_width: int, device) -> list[LogitsProcessor]:
        """generate()'s processors in generate()'s order. Called one by one: LogitsProcessorList
        inspects every processor's signature on every step (15 µs a step for one processor)."""
        a = self.args
        eos = torch.tensor(self.eos_ids, device=device)
        out: list[LogitsProcessor] = []
        if a.repetition_penalty is not None and a.repetition_penalty != 1.0:
            out.append(RepetitionPenaltyLogitsProcessor(penalty=a.repetition_penalty))
        if self.min_new_tokens > 0:
            out.append(_EosBan(prompt_width, self.min_new_tokens, eos))
        if a.temperature is not None and a.temperature != 1.0:
            out.append(TemperatureLogitsWarper(a.temperature))
        if a.top_k and a.top_k > 0:
            out.append(TopKLogitsWarper(top_k=a.top_k))
        if a.top_p is not None and a.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=a.top_p))
        if a.min_p is not None:
            out.append(MinPLogitsWarper(min_p=a.min_p))
        return out

    def _sample(
        self, view: DecoderView, prompt_ids, max_new_tokens: int, keep_record: bool = True, pack: bool = False
    ) -> list[list[int]]:
        device = view.lm_head.weight.device
        ids, mask = left_pad(prompt_ids, self.pad_id, device)
        b, p = ids.shape
        first, owner = distinct_rows(ids, mask)
        cache = _StaticCache(view, b, p + max_new_tokens, mask, device)
        record = self._record_plan(view, b, len(first), p, max_new_tokens) if keep_record else None

        # Prefill: distinct prompts once, keys/values copied to every row that repeats them.
        layout = PackedLayout.from_parts(ids, mask, first, owner, ids[:, :0])
        attend = _PrefillAttention(view, layout, cache)
        h = view.embed(layout.flat_ids())
        cos_table, sin_table = view.rope_table(h, p + max_new_tokens)
        cos, sin = cos_table[layout.positions], sin_table[layout.positions]
        for index in range(len(view.layers)):
            if record is not None:
                record.prefix.append(h.view(len(first), p, -1))
            h = view.layer(index, h, cos, sin, attend)
        if record is not None:
            record.prefix.append(h.view(len(first), p, -1))
        logits = view.logits(h.view(len(first), p, -1)[owner, -1]).float()

        fused = FusedDecodeLayers.of(view, pack=pack) if max_new_tokens > 1 else None
        decode_layer = fused.layer if fused is not None else view.layer
        decode_logits = fused.logits if fused is not None else view.logits
        if fused is not None:  # rows for fused.layer: [.., 1, hd], sin with its sign folded in
            cos_table, decode_sin_table = cos_table.unsqueeze(1), signed_sin(sin_table).unsqueeze(1)
        else:
            decode_sin_table = sin_table

        support = None
        if record is not None and self.support_topk > 0:
            support = SupportRecorder(self.support_topk, self.args.temperature or 1.0)
        tokens = torch.full((b, p + max_new_tokens), self.pad_id, dtype=torch.long, device=device)
        tokens[:, :p] = ids
        processors = self._processors(p, device)
        eos = torch.tensor(self.eos_ids, device=device)
        unfinished = torch.ones(b, dtype=torch.bool, device=device)
        positions = mask.long().sum(-1)
        steps = 0
        while True:
            if support is not None:  # before the processors: some write into the logits
                support.observe(logits)
            scores = logits
            for processor in processors:
                scores = processor(tokens[:, : p + steps], scores)
            probs = F.softmax(scores, dim=-1)
            nxt = self._draw(probs)
            nxt.masked_fill_(~unfinished, self.pad_id)
            if support is not None:
                support.sampled(nxt)
            tokens[:, p + steps] = nxt
            steps += 1
            unfinished &= (nxt != eos[0]) if len(eos) == 1 else ~torch.isin(nxt, eos)
            if steps == max_new_tokens or not unfinished.any():
                break
            # Feed the sampled token: one new cache column per layer.
            h = view.embed(nxt)
            at = positions + (steps - 1)
            cos, sin = cos_table[at], decode_sin_table[at]
            attend = cache.decode_step(p + steps - 1)
            for index in range(len(view.layers)):
                if record is not None:
                    record.suffix[index][:, steps - 1] = h
                h = decode_layer(index, h, cos, sin, attend)
            if record is not None:
                record.suffix[-1][:, steps - 1] = h
            logits = decode_logits(h).float()

        new = tokens[:, p : p + steps]
        if record is not None:
            record.finish(ids, mask, new, owner, self._version_getter(), support)
            self.last_record = record.result
        eos_set = set(self.eos_ids)
        return [cut_after_eos(row, eos_set) for row in new.tolist()]

    def _record_plan(self, view: DecoderView, b: int, d: int, p: int, max_new: int) -> Recorder | None:
        if not self.record_budget_bytes:
            return None
        per_token = (len(view.layers) + 1) * view.hidden_size * view.lm_head.weight.element_size()
        if per_token * (d * p + b * max(max_new - 1, 0)) > self.record_budget_bytes:
            return None
        return Recorder(view, b, max_new, view.lm_head.weight.device, view.lm_head.weight.dtype)


class _EosBan:
    """``MinNewTokensLengthLogitsProcessor``'s result (−inf in the EOS columns while fewer than
    ``min_new_tokens`` tokens are new) written into those columns in place: the library's
    ``where`` over the whole vocabulary cost 1.2 ms a step at 8 rows × 49k."""

    def __init__(self, prompt_width: int, min_new_tokens: int, eos: Tensor) -> None:
        self.prompt_width = prompt_width
        self.min_new_tokens = min_new_tokens
        self.eos = eos

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if input_ids.shape[-1] - self.prompt_width < self.min_new_tokens:
            scores.index_fill_(1, self.eos, float("-inf"))
        return scores


class _StaticCache:
    """Per layer K, V [B, KV, T, hd] and an additive key bias [B, 1, 1, T] (−inf on prompt padding).

    On the CPU the cache is float32 whatever the weights' dtype: a bfloat16 batched matmul there
    copies its strided cache slice first, every step, which cost more than the attention itself.
    """

    def __init__(self, view: DecoderView, b: int, width: int, prompt_mask: Tensor, device) -> None:
        dtype = view.lm_head.weight.dtype
        if torch.device(device).type == "cpu":
            dtype = torch.promote_types(dtype, torch.float32)
        shape = (b, view.num_kv_heads, width, view.head_dim)
        self.view = view
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in view.layers]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in view.layers]
        self.key_bias = torch.zeros((b, 1, 1, width), dtype=dtype, device=device)
        self.key_bias[:, 0, 0, : prompt_mask.shape[1]].masked_fill_(~prompt_mask.bool(), float("-inf"))

    def decode_step(self, column: int):
        """attend() for one new token per row at cache ``column``.

        Grouped-query attention by viewing the query heads as [KV, groups]: SDPA then sees each
        KV head's group as that head's queries, and the cache is never repeated (half the time
        of a repeated-cache call at these sizes; one SDPA call is 30% faster on the tiny model
        than the matmul, softmax, matmul it replaced).
        """
        view, keys, values = self.view, self.keys, self.values
        bias = self.key_bias[..., : column + 1]

        def attend(index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            keys[index][:, :, column] = k
            values[index][:, :, column] = v
            b = q.shape[0]
            grouped = q.view(b, view.num_kv_heads, view.kv_groups, view.head_dim).to(bias.dtype)
            out = F.scaled_dot_product_attention(
                grouped,
                keys[index][:, :, : column + 1],
                values[index][:, :, : column + 1],
                attn_mask=bias,
                scale=view.scaling,
            )
            return out.reshape(b, -1).to(q.dtype)

        return attend


class _PrefillAttention(PackedAttention):
    """Prefix attention that also writes each row's prompt keys/values into the cache."""

    def __init__(self, view: DecoderView, layout: PackedLayout, cache: _StaticCache) -> None:
        super().__init__(view, layout)
        self.cache = cache

    def __call__(self, index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        d, p = self.layout.prefix_ids.shape
        owner = self.layout.owner
        kv, hd = self.view.num_kv_heads, self.view.head_dim
        self.cache.keys[index][:, :, :p] = k.view(d, p, kv, hd).transpose(1, 2)[owner]
        self.cache.values[index][:, :, :p] = v.view(d, p, kv, hd).transpose(1, 2)[owner]
        return super().__call__(index, q, k, v)


__all__ = ["FAST_GENERATION_KWARGS", "RolloutRecord", "StaticCacheGenerator"]
