"""sdpo_agent.generation: sampling settings and the shared-prompt prefill, with the tiny model."""

from __future__ import annotations

import pytest
import torch

from sdpo_agent.generation import (
    TransformersGenerator,
    left_pad,
    prefill_shared_prefix,
    sampling_settings,
    shared_prefix_logits,
)
from sdpo_agent.tiny_model import build_tiny_model

sampling_args = sampling_settings


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny_model()
    tokenizer.padding_side = "left"
    return model, tokenizer


def chat_ids(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )


def group_prompts(tokenizer, group: int = 4) -> list[list[int]]:
    texts = ["Solve 2+2.", "Name a prime larger than ten and say why it is prime.", "Hi"]
    return [chat_ids(tokenizer, t) for t in texts for _ in range(group)]


def test_top_k_zero_means_no_top_k_filtering(tiny):
    """generate() fills a None top_k with its global default 50; 0 is what disables it."""
    model, tokenizer = tiny
    generator = TransformersGenerator(lambda: model, tokenizer, sampling_args(), [tokenizer.eos_token_id])
    assert generator.config.top_k == 0
    processors = model._get_logits_processor(
        generation_config=model._prepare_generation_config(generator.config)[0],
        input_ids_seq_length=4,
        encoder_input_ids=torch.zeros(1, 4, dtype=torch.long),
        prefix_allowed_tokens_fn=None,
        logits_processor=None,
    )
    assert not any("TopK" in type(p).__name__ for p in processors)
    generator = TransformersGenerator(
        lambda: model, tokenizer, sampling_args(top_k=7), [tokenizer.eos_token_id]
    )
    assert generator.config.top_k == 7


@pytest.mark.parametrize("generation_kwargs", [None, {"min_new_tokens": 24}])
def test_shared_prompt_prefill_samples_the_same_tokens(tiny, generation_kwargs):
    """Prefilling each distinct prompt once draws the very same tokens as a full prefill."""
    model, tokenizer = tiny
    prompts = group_prompts(tokenizer)
    outputs = []
    for share in (False, True):
        generator = TransformersGenerator(
            lambda: model,
            tokenizer,
            sampling_args(generation_kwargs=generation_kwargs),
            [tokenizer.eos_token_id],
            share_prompt_prefill=share,
        )
        torch.manual_seed(0)
        outputs.append(generator.generate(prompts, 24))
    assert outputs[0] == outputs[1]
    assert len({tuple(o) for o in outputs[1]}) > 1  # the rollouts of a group still differ


def test_shared_prompt_prefill_restores_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    generator = TransformersGenerator(lambda: model, tokenizer, sampling_args(), [tokenizer.eos_token_id])
    generator.generate(group_prompts(tokenizer, 2), 4)
    assert model.training
    model.eval()


def teacher_like_batch(tokenizer, completion_length: int = 10):
    prompts = group_prompts(tokenizer, 3)
    prompts[1] = prompts[1][:-2] + prompts[1][-1:]  # a row whose prompt repeats no other
    generator = torch.Generator().manual_seed(0)
    completions = torch.randint(4, 600, (len(prompts), completion_length), generator=generator)
    completion_mask = torch.ones_like(completions)
    completion_mask[2, -3:] = 0
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_token_id)
    ids = torch.cat([prompt_ids, completions], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position_ids, prompt_ids.shape[1], completions, completion_mask


def full_logits(model, ids, mask, position_ids, keep):
    return model(
        input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep, use_cache=False
    ).logits


def test_shared_prefix_logits_match_a_full_forward_without_gradient(tiny):
    model, tokenizer = tiny
    model.eval()
    ids, mask, position_ids, prompt_width, completions, _ = teacher_like_batch(tokenizer)
    keep = completions.shape[1] + 1
    with torch.no_grad():
        expected = full_logits(model, ids, mask, position_ids, keep)
        shared = shared_prefix_logits(
            model, ids, mask, position_ids, prefix_length=prompt_width - 1, logits_to_keep=keep
        )
    assert shared is not None
    torch.testing.assert_close(shared, expected, rtol=1e-5, atol=1e-5)


def test_shared_prefix_logits_give_the_same_gradients(tiny):
    model, tokenizer = tiny
    model.train()
    ids, mask, position_ids, prompt_width, completions, completion_mask = teacher_like_batch(tokenizer)
    keep = completions.shape[1] + 1

    def loss_and_grads(logits):
        logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)
        loss = (logps * completion_mask).sum() / completion_mask.sum()
        model.zero_grad()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    expected_loss, expected_grads = loss_and_grads(full_logits(model, ids, mask, position_ids, keep))
    shared = shared_prefix_logits(
        model, ids, mask, position_ids, prefix_length=prompt_width - 1, logits_to_keep=keep
    )
    assert shared is not None
    loss, grads = loss_and_grads(shared)
    torch.testing.assert_close(loss, expected_loss)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    model.zero_grad()
    model.eval()


def test_no_shared_prefill_when_it_would_change_the_computation(tiny):
    model, tokenizer = tiny
    ids, mask, position_ids, prompt_width, _, _ = teacher_like_batch(tokenizer)
    distinct = torch.arange(ids.shape[0]).unsqueeze(1).expand(-1, ids.shape[1])  # every row differs
    with torch.no_grad():
        assert prefill_shared_prefix(model.eval(), distinct, mask, position_ids, prompt_width - 1) is None
    model.train()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    try:
        enable()
        assert prefill_shared_prefix(model, ids, mask, position_ids, prompt_width - 1) is None
        disable()
        model.config.attention_dropout = 0.1  # dropout masks must not be shared across a group
        assert prefill_shared_prefix(model, ids, mask, position_ids, prompt_width - 1) is None
    finally:
        model.config.attention_dropout = 0.0
        disable()
        model.eval()
