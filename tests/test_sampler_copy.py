"""generation_dtype='bfloat16': sampling from a bfloat16 copy of the policy, filled per batch."""

from __future__ import annotations

import copy

import pytest
import torch

from sdpo_agent import SDPOConfig, SDPOTrainer
from sdpo_agent.fast_generation import StaticCacheGenerator
from sdpo_agent.generation import sampling_settings
from sdpo_agent.sampler_copy import SamplerCopy, inverse_cdf_sample
from sdpo_agent.tiny_model import build_tiny_model
from tests.test_fast_decoder import chat_prompts
from tests.test_trainer import FAST, length_trainer


def bf16_parameters_copy(model):
    """The policy with every parameter rounded to bfloat16 (buffers untouched, as the sampler's)."""
    low = copy.deepcopy(model)
    for param in low.parameters():
        param.data = param.data.to(torch.bfloat16)
    return low


def engine_sample(model, tokenizer, prompts, seed=0, **settings):
    """Engine-mode draws (one uniform per token) with ``model``'s own weights, no copy."""
    generator = StaticCacheGenerator(
        lambda: model, tokenizer, sampling_settings(**settings), [tokenizer.eos_token_id]
    )
    generator.sampler_dtype = next(model.parameters()).dtype
    torch.manual_seed(seed)
    return generator.generate(prompts, 16)


@pytest.fixture
def tiny():
    return build_tiny_model()


def test_bf16_sampler_draws_what_the_rounded_current_policy_draws(tiny):
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    with torch.no_grad():  # larger logits: their bfloat16 rounding changes some draws
        model.lm_head.weight.mul_(4.0)
    settings = {"temperature": 1.0}
    generator = StaticCacheGenerator(
        lambda: model,
        tokenizer,
        sampling_settings(**settings, generation_dtype="bfloat16"),
        [tokenizer.eos_token_id],
    )
    torch.manual_seed(0)
    first = generator.generate(prompts, 16)
    assert first == engine_sample(bf16_parameters_copy(model), tokenizer, prompts, **settings)
    # ...and not what float32 sampling draws (a few tokens differ per batch; four seeds).
    assert any(
        engine_sample(bf16_parameters_copy(model), tokenizer, prompts, seed)
        != engine_sample(model, tokenizer, prompts, seed)
        for seed in range(4)
    )

    # Weights move (an optimizer step): the next batch samples from the new weights.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    torch.manual_seed(0)
    second = generator.generate(prompts, 16)
    assert second == engine_sample(bf16_parameters_copy(model), tokenizer, prompts, **settings)
    assert second != first

    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert generator._sampler_copy.nbytes() < 4096  # emptied between batches


def test_inverse_cdf_draws_follow_the_probabilities_and_skip_zeros():
    torch.manual_seed(0)
    weights = torch.tensor([0.0, 3.0, 0.0, 1.0, 0.5, 0.0, 5.5])  # unnormalised, zeros inside and at the end
    n = 200_000
    draws = inverse_cdf_sample(weights.expand(n, -1))
    counts = torch.bincount(draws, minlength=len(weights)).double()
    expected = weights.double() / weights.sum() * n
    assert counts[weights == 0].sum() == 0
    sigma = (expected * (1 - expected / n)).sqrt()
    assert ((counts - expected).abs() <= 5 * sigma + 1e-9).all(), (counts, expected)
    one_hot = torch.zeros(3, 9)
    one_hot[torch.arange(3), torch.tensor([0, 8, 4])] = 1.0
    assert inverse_cdf_sample(one_hot).tolist() == [0, 8, 4]


def test_inverse_cdf_refuses_nan_and_places_rare_tokens_exactly(monkeypatch):
    probs = torch.tensor([[0.5, 0.5, 0.0], [float("nan"), 0.2, 0.3]])
    with pytest.raises(ValueError, match="nan"):
        inverse_cdf_sample(probs)
    # 10 000 tokens of probability 1e-8, a sixth of the float32 spacing near 1, after one of
    # 1 - 1e-4: u lands in the middle of tail token 5001's interval.
    probs = torch.full((1, 10_001), 1e-8)
    probs[0, 0] = 1 - 1e-4
    head, rare = probs[0, :2].double().tolist()  # the float32 values, exactly
    u = (head + 5000.5 * rare) / probs.double().sum().item()
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, u, **kw))
    assert inverse_cdf_sample(probs).item() == 5001


def test_bf16_sampler_keeps_no_layer_record(tiny):
    model, tokenizer = tiny
    records = {}
    for dtype in (None, "bfloat16"):
        generator = StaticCacheGenerator(
            lambda: model,
            tokenizer,
            sampling_settings(generation_dtype=dtype),
            [tokenizer.eos_token_id],
            record_budget_bytes=1 << 30,
        )
        generator.generate(chat_prompts(tokenizer, 2), 8)
        records[dtype] = generator.last_record
    # A bfloat16 pass's layer inputs are not what the float32 training forward computes.
    assert records[None] is not None and records["bfloat16"] is None


def test_sampler_copy_keeps_tied_weights_tied_and_the_source_untouched(tiny):
    model, _ = tiny
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sampler = SamplerCopy(model, torch.bfloat16)
    low = sampler.fill()
    assert low.lm_head.weight is low.model.embed_tokens.weight
    assert torch.equal(low.lm_head.weight, model.lm_head.weight.detach().to(torch.bfloat16))
    sampler.empty()
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert all(not p.requires_grad for p in low.parameters())


def test_sdpo_trains_with_every_bf16_option(tmp_path, monkeypatch):
    model, tokenizer = build_tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    fills = []
    original_fill = SamplerCopy.fill

    def checked_fill(self):
        low = original_fill(self)
        fills.append(all(torch.equal(c, s.detach().to(torch.bfloat16)) for s, c in self.pairs))
        return low

    monkeypatch.setattr(SamplerCopy, "fill", checked_fill)
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        learning_rate=1e-2,
        include_environment_feedback=True,
        generation_dtype="bfloat16",
        teacher_storage_dtype="bfloat16",
        teacher_compute_dtype="bfloat16",
        **FAST,
    )
    trainer = length_trainer(SDPOTrainer, model, tokenizer, args)
    trainer.train()
    assert fills == [True, True]  # one fill per generation batch, from that step's weights
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any("distillation_loss" in entry for entry in trainer.state.log_history)
