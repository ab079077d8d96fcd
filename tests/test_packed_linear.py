"""pack_decode_weights: the sampler's oneDNN-packed linear layers (float32 and bfloat16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sdpo_agent import SDPOConfig, SDPOTrainer, fused_decode
from sdpo_agent.decoder import DecoderView
from sdpo_agent.fast_generation import StaticCacheGenerator
from sdpo_agent.generation import sampling_settings
from sdpo_agent.packed_linear import MIN_PACKED_ELEMENTS, PackedLinear, packable, packing_available
from sdpo_agent.sampler_copy import SamplerCopy
from sdpo_agent.tiny_model import build_tiny_model
from tests.test_fast_decoder import chat_prompts
from tests.test_fused_decode import AdapterLinear
from tests.test_trainer import FAST, length_trainer

pytestmark = pytest.mark.skipif(
    not packing_available(torch.float32, "cpu"), reason="this torch build has no oneDNN (mkldnn) packing"
)
BF16 = pytest.mark.skipif(
    not packing_available(torch.bfloat16, "cpu"), reason="this CPU has no bfloat16 instructions for oneDNN"
)


@pytest.fixture
def pack_everything(monkeypatch):
    """The tiny model's matrices are below the size where packing pays: pack them anyway."""
    for dtype in list(MIN_PACKED_ELEMENTS):
        monkeypatch.setitem(MIN_PACKED_ELEMENTS, dtype, 0)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=BF16)])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_computes_the_linear_layer(dtype, bias):
    torch.manual_seed(0)
    linear = nn.Linear(96, 160, bias=bias)
    packed = PackedLinear(linear, dtype)
    with pytest.raises(RuntimeError, match="before pack"):
        packed(torch.randn(2, 96))
    packed.pack(linear.weight, linear.bias)
    for shape in [(8, 96), (3, 5, 96), (1, 96)]:  # the rows hint is a hint, not a limit
        x = torch.randn(shape)
        want = nn.functional.linear(
            x.to(dtype), linear.weight.to(dtype), None if linear.bias is None else linear.bias.to(dtype)
        )
        got = packed(x)
        assert got.shape == want.shape and got.dtype == dtype
        tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype is torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
        torch.testing.assert_close(got.float(), want.float(), **tolerance)
    assert packed.weight.shape == linear.weight.shape and packed.weight.dtype == dtype
    packed.clear()
    assert packed.packed is None


def test_only_large_plain_linear_layers_are_packed():
    big, small = nn.Linear(1024, 512), nn.Linear(64, 64)

    class LoraLike(nn.Linear):
        pass

    assert packable(big, torch.float32) and not packable(small, torch.float32)
    assert not packable(LoraLike(1024, 512), torch.float32)  # subclasses keep their own forward
    assert not packable(nn.Embedding(4096, 512), torch.float32)
    assert packable(small, torch.float32, min_elements=0)


def test_float32_packed_copy_gives_the_policy_logits_and_shares_its_other_weights(pack_everything):
    model, tokenizer = build_tiny_model()
    sampler = SamplerCopy(model, torch.float32, pack=True)
    layer_count = len(model.model.layers)
    assert len(sampler.packed) == 7 * layer_count + 1  # q k v o gate up down per layer, and the LM head
    ids = torch.tensor(chat_prompts(tokenizer, 1)[:1])

    def logits_of(module):
        with torch.no_grad():
            return module(input_ids=ids).logits

    copy = sampler.fill()
    torch.testing.assert_close(logits_of(copy), logits_of(model.eval()), rtol=1e-5, atol=1e-5)
    # The embedding (tied to the LM head) and the norms are the policy's own tensors.
    assert copy.model.embed_tokens.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sampler.nbytes() > 0
    sampler.empty()
    assert sampler.nbytes() < 4096  # stand-ins only
    assert all(packed.packed is None for _, packed in sampler.packed)

    with torch.no_grad():  # an optimizer step: the next fill packs the new weights
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    torch.testing.assert_close(logits_of(sampler.fill()), logits_of(model), rtol=1e-5, atol=1e-5)
    sampler.empty()


def sample(model, tokenizer, prompts, pack: bool, **settings):
    generator = StaticCacheGenerator(
        lambda: model,
        tokenizer,
        sampling_settings(**settings, pack_decode_weights=pack),
        [tokenizer.eos_token_id],
        record_budget_bytes=1 << 30,
    )
    torch.manual_seed(0)
    return generator.generate(prompts, 12), generator


def packed_matrices(monkeypatch) -> list[torch.Tensor]:
    """Every matrix the fused decode layers pack, as packed (a copy of the weight given)."""
    seen: list[torch.Tensor] = []
    original = fused_decode.pack_matrix

    def spy(weight, rows_hint=8):
        seen.append(weight.detach().clone())
        return original(weight, rows_hint)

    monkeypatch.setattr(fused_decode, "pack_matrix", spy)
    return seen


def test_packed_float32_sampling_draws_the_tokens_and_keeps_the_record(pack_everything, monkeypatch):
    model, tokenizer = build_tiny_model()
    prompts = chat_prompts(tokenizer, 2)
    plain, plain_generator = sample(model, tokenizer, prompts, pack=False)
    packs = packed_matrices(monkeypatch)
    packed, packed_generator = sample(model, tokenizer, prompts, pack=True)
    # The fused layers pack their own concatenations: q|k|v, o, gate|up, down per layer, the
    # LM head; no packed copy of the model is made.
    assert plain_generator._sampler_copy is None and packed_generator._sampler_copy is None
    layers, config = model.config.num_hidden_layers, model.config
    assert len(packs) == 4 * layers + 1
    head_dim = config.hidden_size // config.num_attention_heads
    qkv_rows = (config.num_attention_heads + 2 * config.num_key_value_heads) * head_dim
    assert packs[0].shape == (qkv_rows, config.hidden_size)
    assert packs[-1].shape == (config.vocab_size, config.hidden_size)
    # Same float32 arithmetic up to the order of additions: the same draws for a seed.
    assert packed == plain
    # The packed pass's layer inputs are the float32 forward's, so it keeps its record.
    a, b = plain_generator.last_record, packed_generator.last_record
    assert a is not None and b is not None
    for x, y in zip(a.prefix + a.suffix, b.prefix + b.suffix, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_unfusable_layers_sample_through_a_packed_copy(pack_everything):
    model, tokenizer = build_tiny_model()
    attn = model.model.layers[0].self_attn
    adapted = AdapterLinear(attn.v_proj.in_features, attn.v_proj.out_features, bias=False)
    adapted.load_state_dict(attn.v_proj.state_dict())
    attn.v_proj = adapted  # a LoRA-like layer: no fusion, so packing goes through a copy
    prompts = chat_prompts(tokenizer, 2)
    plain, _ = sample(model, tokenizer, prompts, pack=False)
    packed, generator = sample(model, tokenizer, prompts, pack=True)
    assert generator._sampler_copy is not None
    assert isinstance(DecoderView.of(generator._sampler_copy.model).lm_head, PackedLinear)
    assert packed == plain
    assert generator.last_record is not None
    assert generator._sampler_copy.nbytes() < 4096  # freed between batches


@BF16
def test_packed_bfloat16_sampling_keeps_no_record_and_matches_the_unpacked_copy(pack_everything):
    model, tokenizer = build_tiny_model()
    prompts = chat_prompts(tokenizer, 2)
    packed, generator = sample(model, tokenizer, prompts, pack=True, generation_dtype="bfloat16")
    assert generator.last_record is None
    assert generator._sampler_copy.dtype is torch.bfloat16 and generator._sampler_copy.packed
    unpacked, _ = sample(model, tokenizer, prompts, pack=False, generation_dtype="bfloat16")
    agreeing = sum(a == b for x, y in zip(packed, unpacked) for a, b in zip(x, y))
    assert agreeing >= 0.9 * sum(len(x) for x in unpacked)  # bfloat16 rounding may flip a few draws


def test_sdpo_trains_through_packed_sampling(tmp_path, pack_everything, monkeypatch):
    model, tokenizer = build_tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    packs = packed_matrices(monkeypatch)
    # Every failed row has a teacher (its privileged context), so step 1 moves the weights.
    args = SDPOConfig(
        output_dir=str(tmp_path), max_steps=2, learning_rate=1e-2, include_environment_feedback=True, **FAST
    )
    trainer = length_trainer(SDPOTrainer, model, tokenizer, args)
    trainer.train()
    heads = [w for w in packs if w.shape[0] == model.config.vocab_size]
    assert len(heads) == 2  # the LM head packed once per generation batch...
    assert not torch.equal(heads[0], heads[1])  # ...from that step's weights
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) > 0
    assert any("distillation_loss" in entry for entry in trainer.state.log_history)
