"""The logits the losses read: the model's own forward on prompt + completion, sliced."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from sdpo_agent.losses import policy_loss_on_rows, rows_with_policy_gradient
from sdpo_agent.rollout.batching import RolloutBatch
from sdpo_agent.rollout.generation import left_pad
from sdpo_agent.trainers.policy_logits import completion_logits, sampled_token_log_probs, student_logits


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=1,
    )
    return AutoModelForCausalLM.from_config(config).float().eval()


def grouped_batch(vocab: int = 97, pad: int = 0, completion_length: int = 7) -> RolloutBatch:
    """Three prompts (one left-padded shorter), each three times; one completion ends early."""
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in (6, 9, 9)]
    rows = [p for p in prompts for _ in range(3)]
    prompt_ids, prompt_mask = left_pad(rows, pad)
    completions = torch.randint(3, vocab, (len(rows), completion_length), generator=generator)
    completion_mask = torch.ones_like(completions)
    completions[4, -2:], completion_mask[4, -2:] = pad, 0
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completions,
        completion_attention_mask=completion_mask,
        completion_mask=completion_mask,
        advantages=torch.zeros(len(rows)),
        valid=torch.ones(len(rows)),
    )


def reference_logits(model, batch: RolloutBatch) -> torch.Tensor:
    """Each row alone, unpadded: what the logits of its completion tokens must be."""
    out = []
    for i in range(batch.prompt_ids.shape[0]):
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
        ids = torch.cat([prompt, batch.completion_ids[i]]).unsqueeze(0)
        logits = model(input_ids=ids, use_cache=False).logits[0]
        out.append(logits[len(prompt) - 1 : -1])
    return torch.stack(out)


def test_completion_logits_are_each_rows_own_forward(model):
    batch = grouped_batch()
    want = reference_logits(model, batch) / 0.7
    got = student_logits(model, batch, 0.7)
    real = batch.completion_attention_mask.bool()
    torch.testing.assert_close(got[real], want.detach()[real], atol=1e-5, rtol=1e-4)
    assert got.requires_grad


def test_selected_rows_and_chunked_log_probs_agree_with_the_whole_batch(model):
    batch = grouped_batch()
    with torch.no_grad():
        whole = student_logits(model, batch, 1.0)
        rows = torch.tensor([1, 4, 8])
        torch.testing.assert_close(student_logits(model, batch, 1.0, rows), whole[rows], atol=1e-5, rtol=1e-4)
    logps = sampled_token_log_probs(model, batch, 1.0, chunk_rows=2)
    want = torch.log_softmax(whole, -1).gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logps, want, atol=1e-5, rtol=1e-4)


def test_completion_logits_gradients_match_the_reference(model):
    batch = grouped_batch()
    ids = torch.cat([batch.prompt_ids, batch.completion_ids], 1)
    mask = torch.cat([batch.prompt_mask, batch.completion_attention_mask], 1)
    # Positions after a completion's end are masked out of every loss, and are not the same logits.
    weights = torch.randn(ids.shape[0], batch.completion_ids.shape[1], 97)
    weights *= batch.completion_attention_mask.unsqueeze(-1)
    model.zero_grad()
    (completion_logits(model, ids, mask, batch.completion_ids.shape[1]) * weights).sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    (reference_logits(model, batch) * weights).sum().backward()
    for name, p in model.named_parameters():
        error = (ours[name] - p.grad).norm() / p.grad.norm().clamp(min=1e-12)
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"
    model.zero_grad()


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_skipping_zero_advantage_rows_keeps_loss_and_gradient(loss_type):
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 11, requires_grad=True)
    inputs = {
        "completion_ids": torch.randint(0, 11, (6, 5)),
        "completion_mask": torch.ones(6, 5),
        "valid": torch.tensor([1.0, 1, 1, 1, 0, 1]),
        "advantages": torch.tensor([0.0, 0.7, 0.0, -0.7, 0.5, 0.0]),
    }
    inputs["completion_mask"][1, -2:] = 0
    settings = {
        "epsilon": 0.2,
        "epsilon_high": 0.2,
        "importance_sampling_level": "token",
        "loss_type": loss_type,
        "max_completion_length": 5,
    }
    mask = inputs["completion_mask"] * inputs["valid"].unsqueeze(1)
    batch = (inputs["completion_ids"], inputs["advantages"], mask, None)
    full = policy_loss_on_rows(logits, *batch, **settings)
    (full_grad,) = torch.autograd.grad(full, logits)
    rows = rows_with_policy_gradient(inputs["advantages"], inputs["valid"], beta=0.0)
    assert rows.tolist() == [1, 3]
    part = policy_loss_on_rows(logits[rows], *batch, rows=rows, **settings)
    (part_grad,) = torch.autograd.grad(part, logits)
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(part_grad, full_grad)
    assert rows_with_policy_gradient(inputs["advantages"], inputs["valid"], beta=0.04) is None
