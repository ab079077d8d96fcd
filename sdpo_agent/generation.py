"""Generation backends: the seam where an inference engine (vLLM, a server) plugs in.

A backend maps token-id prompts to sampled continuation ids. Continuations stop after the
first end-of-sequence token (kept) or at ``max_new_tokens``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Protocol

import torch
from transformers import GenerationConfig

from .config import RolloutConfig
from .decoder import base_model


class GenerationBackend(Protocol):
    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]: ...

    def close(self) -> None:
        """Free what the backend holds beyond the policy (an engine, its KV cache)."""


# The fields that choose and shape a vLLM backend (RolloutConfig's names).
VLLM_SETTINGS = (
    "use_vllm",
    "max_prompt_length",
    *(f.name for f in dataclasses.fields(RolloutConfig) if f.name.startswith("vllm_")),
)


def sampling_settings(temperature: float = 1.0, **overrides: Any) -> SimpleNamespace:
    """The generation fields a backend reads (as on ``RolloutConfig``, the vLLM ones included),
    for callers that sample without a trainer config: plain sampling at ``temperature``."""
    fields = {
        **{f.name: f.default for f in dataclasses.fields(RolloutConfig) if f.name.startswith("vllm_")},
        "use_vllm": False,
        "max_prompt_length": None,
        "max_completion_length": None,
        "temperature": temperature,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": None,
        "repetition_penalty": 1.0,
        "cache_implementation": None,
        "generation_kwargs": None,
    }
    return SimpleNamespace(**{**fields, **overrides})


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, attention_mask)``."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def right_pad(sequences: Sequence[Sequence[int]], pad_value: int, device: Any = None) -> torch.Tensor:
    width = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), max(width, 1)), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            out[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return out.to(device)


def cut_after_eos(ids: Sequence[int], eos_ids: set[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in eos_ids:
            return list(ids[: i + 1])
    return list(ids)


class TransformersGenerator:
    """Sampling with ``model.generate`` on the training model (no copy, no weight sync).

    Prompts that occur more than once in a batch (the ``num_generations`` rollouts of one
    group) are prefilled once: the KV cache of each distinct left-padded prompt, all but its
    last token, is computed on the distinct prompts only, copied to every row that repeats
    it, and ``generate`` continues from there (the last prompt token, then sampling). The
    cache holds the same keys and values a full prefill computes, at the same positions and
    with the same mask; sampling draws from the same distributions with the same random
    numbers. Anything the shortcut is not known to handle (beam search, several returned
    sequences, a static or non-dynamic cache, encoder-decoders, an unknown forward
    signature) goes through plain ``generate``.
    """

    def __init__(
        self,
        model_getter,
        tokenizer,
        args,
        eos_token_ids: Sequence[int],
        max_batch: int | None = None,
        share_prompt_prefill: bool = True,
    ):
        self._model_getter = model_getter  # a callable: the unwrapped model can change (DDP, PEFT)
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_token_ids)
        self.max_batch = max_batch
        self.share_prompt_prefill = share_prompt_prefill
        # 0 disables top-k filtering, as in the reference. ``None`` would not: generate() fills
        # unset fields from the model's generation config, then from the global default top_k=50.
        top_k = args.top_k if args.top_k and args.top_k > 0 else 0
        self.config = GenerationConfig(
            do_sample=True,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=top_k,
            min_p=args.min_p,
            repetition_penalty=args.repetition_penalty,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            cache_implementation=args.cache_implementation,
            use_cache=True,
            **(args.generation_kwargs or {}),
        )

    def close(self) -> None:
        """Nothing to free: it samples with the training model itself."""

    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        if not prompt_ids:
            return []
        model = self._model_getter()
        was_training = model.training
        model.eval()  # no dropout, and gradient checkpointing off so the KV cache is used
        try:
            step = self.max_batch or len(prompt_ids)
            out: list[list[int]] = []
            for start in range(0, len(prompt_ids), step):
                out.extend(self._generate_chunk(model, prompt_ids[start : start + step], max_new_tokens))
            return out
        finally:
            model.train(was_training)

    def _generate_chunk(self, model, prompt_ids, max_new_tokens):
        device = next(model.parameters()).device
        ids, mask = left_pad(prompt_ids, self.tokenizer.pad_token_id, device)
        config = copy.copy(self.config)
        config.max_new_tokens = max_new_tokens
        kwargs = self._shared_prefix_cache(model, prompt_ids, ids, mask, config)
        sequences = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, **kwargs)
        new_tokens = sequences[:, ids.shape[1] :].tolist()
        return [cut_after_eos(row, self.eos_ids) for row in new_tokens]

    def _shared_prefix_cache(self, model, prompt_ids, ids, mask, config) -> dict[str, Any]:
        """``{cache_kwarg: cache}`` with every row's prompt but its last column prefilled once per
        distinct prompt, or ``{}`` when there is nothing to share or the shortcut does not apply."""
        if not self.share_prompt_prefill or len(set(map(tuple, prompt_ids))) == len(prompt_ids):
            return {}
        if not _generate_accepts_prefilled_cache(config):
            return {}
        # The positions generate() gives a left-padded prompt (pads get 0; they are masked out).
        position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        prefilled = prefill_shared_prefix(model, ids, mask, position_ids, ids.shape[1] - 1)
        return {} if prefilled is None else {prefilled[0]: prefilled[1]}


# ------------------------------------------------------------------- shared-prefix prefill

# Model classes whose forward turned out not to return a row-expandable dynamic cache.
_NOT_EXPANDABLE: set[type] = set()


def prefill_shared_prefix(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    prefix_length: int,
) -> tuple[str, Any] | None:
    """The KV cache of columns ``[:prefix_length]`` of every row, computed once per distinct
    (ids, mask) prefix and copied to the rows that repeat it, as ``(cache_kwarg, cache)``.

    None when no prefix repeats, or the model cannot be fed a prefilled cache: then the
    caller runs its usual full forward. A row's keys and values depend only on its own
    earlier columns, so they equal a full forward's (the batch it is computed in can change
    float rounding). Under autograd the copy is an index (its backward sums over the rows),
    so this is only used where the model keeps its cache: not while gradient checkpointing
    recomputes layers, and not with several processes (DDP/FSDP/DeepSpeed expect one
    forward per backward). Not in training mode with any dropout either (a shared prompt
    forward would share its dropout masks across the rows).
    """
    if prefix_length < 1 or prefix_length >= input_ids.shape[1]:
        return None
    cache_kwarg = _cache_kwarg(model)
    if cache_kwarg is None:
        return None
    if torch.is_grad_enabled() and (_distributed() or (model.training and checkpointing_enabled(model))):
        return None
    if model.training and not dropout_free(model):
        return None  # one prompt forward per group would share its dropout masks across the group
    rows = _distinct_rows(input_ids[:, :prefix_length], attention_mask[:, :prefix_length])
    if rows is None:
        return None
    first, owner = rows
    out = model(
        input_ids=input_ids[first, :prefix_length],
        attention_mask=attention_mask[first, :prefix_length],
        position_ids=position_ids[first, :prefix_length],
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(out, cache_kwarg, None)
    if not _expandable(cache):
        _NOT_EXPANDABLE.add(type(base_model(model)))
        return None
    cache.batch_select_indices(owner)
    return cache_kwarg, cache


def shared_prefix_logits(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    *,
    prefix_length: int,
    logits_to_keep: int,
) -> torch.Tensor | None:
    """``model(input_ids, attention_mask, position_ids, logits_to_keep=...).logits`` with the
    first ``prefix_length`` columns prefilled once per distinct prefix (see
    :func:`prefill_shared_prefix`), or None when nothing is shared (call the model as usual).

    ``logits_to_keep`` must not exceed the columns after the prefix.
    """
    if logits_to_keep < 1 or logits_to_keep > input_ids.shape[1] - prefix_length:
        return None
    prefilled = prefill_shared_prefix(model, input_ids, attention_mask, position_ids, prefix_length)
    if prefilled is None:
        return None
    cache_kwarg, cache = prefilled
    out = model(
        input_ids=input_ids[:, prefix_length:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prefix_length:],
        use_cache=True,
        logits_to_keep=logits_to_keep,
        **{cache_kwarg: cache},
    )
    return out.logits


def _distinct_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(index of the first row of each distinct (ids, mask) row, owner[row] = its distinct
    row's position), or None when all rows differ."""
    key = torch.cat([ids, mask.to(ids.dtype)], dim=1).tolist()
    position: dict[tuple[int, ...], int] = {}
    owner = [position.setdefault(tuple(row), len(position)) for row in key]
    if len(position) == len(owner):
        return None
    first = [owner.index(k) for k in range(len(position))]
    return torch.tensor(first, device=ids.device), torch.tensor(owner, device=ids.device)


def _distributed() -> bool:
    """Several processes: a sharded or wrapped model may expect one forward per backward."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def checkpointing_enabled(model) -> bool:
    """Any layer set to recompute its activations in backward (``is_activation_checkpointing``,
    without that property's version-dependent name)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def dropout_free(model) -> bool:
    """No dropout module and no ``*dropout*``/``*pdrop*`` config value above 0."""
    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return False
    config = getattr(base_model(model), "config", None)
    values = config.to_dict().items() if hasattr(config, "to_dict") else ()
    return not any(
        ("dropout" in key or "pdrop" in key) and isinstance(value, (int, float)) and value > 0
        for key, value in values
    )


def _cache_kwarg(model) -> str | None:
    """The name under which the model takes and returns its KV cache (``cache`` in recent
    transformers, ``past_key_values`` before), or None when it is not a plain decoder-only
    ``PreTrainedModel`` (a DDP/FSDP/DeepSpeed wrapper, an encoder-decoder, ...)."""
    from transformers import PreTrainedModel

    base = base_model(model)
    if not isinstance(base, PreTrainedModel) or type(base) in _NOT_EXPANDABLE:
        return None
    if getattr(base.config, "is_encoder_decoder", False):
        return None
    if torch.is_grad_enabled() and model is not base:
        return None  # PEFT under autograd: keep its own forward path
    try:
        parameters = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return None
    names = [name for name in ("cache", "past_key_values") if name in parameters]
    return names[0] if names else None


def _generate_accepts_prefilled_cache(config: GenerationConfig) -> bool:
    """generate() may be seeded with a prefilled dynamic cache under this configuration."""
    return not (
        config.num_beams not in (None, 1)
        or (config.num_return_sequences or 1) != 1
        or config.cache_implementation is not None
        or getattr(config, "prefill_chunk_size", None) is not None
        or getattr(config, "assistant_model", None) is not None
        or getattr(config, "prompt_lookup_num_tokens", None) is not None
    )


def _expandable(cache: Any) -> bool:
    """A plain ``DynamicCache`` of full-attention layers, whose rows can be copied per index."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return False
    if type(cache) is not DynamicCache or not hasattr(cache, "batch_select_indices"):
        return False
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
