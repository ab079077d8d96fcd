"""sdpo_agent.rollout.generation: sampling settings and the generate() backend, with the tiny model."""

from __future__ import annotations

import pytest
import torch

from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.rollout.generation import (
    TransformersGenerator,
    sampling_settings,
)

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


def test_generation_restores_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    generator = TransformersGenerator(lambda: model, tokenizer, sampling_args(), [tokenizer.eos_token_id])
    generator.generate(group_prompts(tokenizer, 2), 4)
    assert model.training
    model.eval()
