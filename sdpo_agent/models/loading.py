"""Turn the trainer's ``model`` / ``processing_class`` / ``peft_config`` into a ready pair."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoTokenizer

from .resolve import resolve_model


def prepare_model_and_tokenizer(model: Any, processing_class: Any, args: Any, peft_config: Any = None):
    """Load by name/path/alias when needed, set padding for generation, apply PEFT and
    dropout settings. Returns ``(model, tokenizer)``."""
    init_kwargs = dict(args.model_init_kwargs or {})
    # TRL 1.16's trust_remote_code: without it, a checkpoint that ships its own code is refused by
    # transformers with a ValueError that says "custom code".
    trust_remote_code = bool(getattr(args, "trust_remote_code", False))
    if isinstance(model, str):
        model, tokenizer = resolve_model(model, **{"trust_remote_code": trust_remote_code, **init_kwargs})
        processing_class = processing_class or tokenizer
    elif init_kwargs:
        raise ValueError("model_init_kwargs only applies when model is a name or path")
    if processing_class is None:
        processing_class = AutoTokenizer.from_pretrained(
            model.config._name_or_path, trust_remote_code=trust_remote_code
        )
    tokenizer = getattr(processing_class, "tokenizer", processing_class)  # processors wrap a tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if peft_config is not None:
        try:
            from peft import get_peft_model
        except ImportError as exc:
            raise ImportError("peft_config needs the `peft` package: pip install peft") from exc
        model = get_peft_model(model, peft_config)
    if args.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if args.gradient_checkpointing:
        model.config.use_cache = False
    return model, tokenizer
