"""The `tiny` model alias: a randomly initialised tiny Llama with an in-process tokenizer.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a small built-in
corpus (so any text encodes and decodes losslessly), and the weights come from a fixed
seed. It is for tests and smoke runs: a training step on CPU takes milliseconds.
"""

from __future__ import annotations

import keyword
import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .chat_template import chatml_template

TINY_SEED = 0
BOS_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = [BOS_TOKEN, "<|im_start|>", EOS_TOKEN, PAD_TOKEN]
# Markup that environments and reprompts use; one token each, yet still plain text when
# decoding with skip_special_tokens=True (as in Qwen's tokenizer).
MARKUP_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
_MERGES_TARGET = 1024

_CORPUS = [
    string.digits,
    " ".join(string.digits),
    string.ascii_lowercase,
    string.ascii_uppercase,
    " ".join(string.punctuation),
    " ".join(keyword.kwlist),
    "def solve():\n    n = int(input())\n    print(n)\n    return n\n",
    "for i in range(len(xs)):\n    if xs[i] > 0:\n        total += xs[i]\n",
    "import sys\nfrom typing import List\n\nclass Solution:\n    pass\n",
    "The answer is \\boxed{42}. So the final answer is \\boxed{7}.",
    "<think>Let me think step by step.</think>",
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}\n</tool_call>',
    "<tool_response>\n5\n</tool_response>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
    "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    "Question: which option is correct? Answer: (A) (B) (C) (D)",
    "the of and to in is that it for on with as was this are be at by not or from you",
    "Correct solution: The following is feedback from your unsuccessful earlier attempt.",
    "Correctly solve the original question. Wrong answer, expected output, runtime error.",
]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML special tokens and chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + _MERGES_TARGET,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        # Every byte is in the vocabulary, so no text ever needs an unknown token.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeating the corpus gives its pairs enough frequency; training is deterministic.
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer.add_tokens(MARKUP_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=chatml_template(),
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    # head_dim 32: the smallest vLLM's CPU attention accepts, so `tiny` runs with use_vllm too.
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["LlamaForCausalLM"],
    )


def build_tiny_model(seed: int = TINY_SEED) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """The tiny model and its tokenizer; the same seed always gives the same weights."""
    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer)
    # A private RNG stream: building the model must not move the caller's global seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, tokenizer
