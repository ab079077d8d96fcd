"""Generation backends: the seam where an inference engine (vLLM, a server) plugs in.

A backend maps token-id prompts to sampled continuation ids. Continuations stop after the
first end-of-sequence token (kept) or at ``max_new_tokens``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from transformers import GenerationConfig

from ..config import SamplingSettings


class GenerationBackend(Protocol):
    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]: ...

    def start(self) -> None:
        """Acquire what sampling needs (build the engine, connect to the server) now, so a
        backend that cannot start fails the trainer's construction, not its first step."""

    def close(self) -> None:
        """Free what the backend holds beyond the policy (an engine, its KV cache)."""


def sampling_settings(temperature: float = 1.0, **overrides: Any) -> SamplingSettings:
    """Plain sampling at ``temperature`` for callers without a trainer config: no prompt or
    completion length set (the caller bounds its own), any field overridable."""
    values: dict[str, Any] = {"max_prompt_length": None, "max_completion_length": None}
    return SamplingSettings(temperature=temperature, **{**values, **overrides})


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
    """Sampling with ``model.generate`` on the training model (no copy, no weight sync)."""

    def __init__(
        self,
        model_getter: Callable[[], torch.nn.Module],
        tokenizer: Any,
        args: SamplingSettings,
        eos_token_ids: Sequence[int],
        max_batch: int | None = None,
    ) -> None:
        self._model_getter = model_getter  # a callable: the unwrapped model can change (DDP, PEFT)
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_token_ids)
        self.max_batch = max_batch
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

    def start(self) -> None:
        """Nothing to start: it samples with the training model itself."""

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

    def _generate_chunk(
        self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int
    ) -> list[list[int]]:
        device = next(model.parameters()).device
        ids, mask = left_pad(prompt_ids, self.tokenizer.pad_token_id, device)
        config = copy.copy(self.config)
        config.max_new_tokens = max_new_tokens
        language_model: Any = model  # a transformers model, whose generate() returns the ids here
        sequences = language_model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new_tokens: list[list[int]] = sequences[:, ids.shape[1] :].tolist()
        return [cut_after_eos(row, self.eos_ids) for row in new_tokens]
