"""fused_decode: the decode layer with q|k|v and gate|up fused is bitwise the view's layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sdpo_agent import fused_decode
from sdpo_agent.decoder import DecoderView, rotate_half
from sdpo_agent.fast_generation import StaticCacheGenerator
from sdpo_agent.fused_decode import FusedDecodeLayers, signed_sin
from sdpo_agent.generation import TransformersGenerator, sampling_settings
from sdpo_agent.tiny_model import build_tiny_model
from tests.test_fast_decoder import FAMILIES, chat_prompts


def attention_of(view: DecoderView):
    """A causal-free attention over the step's own rows: any function of q, k and v will do."""

    def attend(index: int, q, k, v):
        groups = view.kv_groups
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # as the decode cache holds them
        keys, values = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores = torch.einsum("nhd,mhd->hnm", q, keys) * view.scaling
        return torch.einsum("hnm,mhd->nhd", scores.softmax(-1), values).flatten(1)

    return attend


def test_signed_sin_turns_rotate_half_into_a_roll():
    x, sin = torch.randn(5, 3, 16), torch.randn(5, 16)
    rolled = x.roll(8, -1) * signed_sin(sin).unsqueeze(1)
    assert torch.equal(rolled, rotate_half(x) * sin.unsqueeze(1))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fused_layers_reproduce_every_layer_bitwise(family):
    view = DecoderView.of(FAMILIES[family]())
    fused = FusedDecodeLayers.of(view)
    assert fused is not None
    torch.manual_seed(1)
    h = torch.randn(8, view.hidden_size)
    angle = torch.rand(8, view.head_dim) * 6
    cos, sin = angle.cos(), angle.sin()
    attend = attention_of(view)
    for index in range(len(view.layers)):
        want = view.layer(index, h, cos, sin, attend)
        got = fused.layer(index, h, cos.unsqueeze(1), signed_sin(sin).unsqueeze(1), attend)
        assert torch.equal(got, want), f"layer {index}: {(got - want).abs().max():.3g}"
        h = want


def test_fused_layers_follow_weight_updates_when_rebuilt():
    view = DecoderView.of(FAMILIES["llama"]())
    before = FusedDecodeLayers.of(view)
    with torch.no_grad():
        view.layers[0].self_attn.k_proj.weight.mul_(2.0)
    after = FusedDecodeLayers.of(view)
    hidden, heads, kv = view.hidden_size, view.num_heads * view.head_dim, view.num_kv_heads * view.head_dim
    k_rows = slice(heads, heads + kv)
    assert torch.equal(after.parts[0]["qkv"].weight[k_rows], 2 * before.parts[0]["qkv"].weight[k_rows])
    assert after.parts[0]["qkv"].weight.shape == (heads + 2 * kv, hidden)


class AdapterLinear(nn.Linear):
    """Stands for a LoRA layer: a Linear subclass whose forward is not its weight alone."""


def test_adapted_projections_keep_the_views_layer():
    model = FAMILIES["llama"]()
    attn = model.model.layers[1].self_attn
    adapted = AdapterLinear(attn.v_proj.in_features, attn.v_proj.out_features, bias=False)
    adapted.load_state_dict(attn.v_proj.state_dict())
    attn.v_proj = adapted
    assert FusedDecodeLayers.of(DecoderView.of(model)) is None


def test_a_disagreeing_blas_turns_fusion_off(monkeypatch):
    model = FAMILIES["llama"]()
    monkeypatch.setattr(FusedDecodeLayers, "agrees_with_view", lambda self: False)
    assert FusedDecodeLayers.of(DecoderView.of(model)) is None
    assert fused_decode._AGREES[model] is False


def test_the_sampler_decodes_through_fused_layers_and_still_draws_generates_tokens(monkeypatch):
    model, tokenizer = build_tiny_model()
    assert FusedDecodeLayers.of(DecoderView.of(model)) is not None  # its one-time check, not counted
    calls = []
    original = FusedDecodeLayers.layer
    monkeypatch.setattr(FusedDecodeLayers, "layer", lambda self, *a: calls.append(a[0]) or original(self, *a))
    args = sampling_settings(match_generate_sampling=True, generation_kwargs={"min_new_tokens": 12})
    eos = [tokenizer.eos_token_id]
    prompts = chat_prompts(tokenizer, 2)
    torch.manual_seed(0)
    ours = StaticCacheGenerator(lambda: model, tokenizer, args, eos).generate(prompts, 12)
    torch.manual_seed(0)
    theirs = TransformersGenerator(lambda: model, tokenizer, args, eos).generate(prompts, 12)
    assert ours == theirs
    assert len(calls) == 11 * model.config.num_hidden_layers  # every decode step after the prefill
