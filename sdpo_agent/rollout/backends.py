"""Which generation backend samples: vLLM (colocated or on a server) with ``use_vllm``,
otherwise transformers' ``generate()`` on the training model itself.

Evaluation and discovery sample from models that are not being trained; they share one vLLM
engine per model (``sampling_generator``), so a job starts an engine once, not once a task.
A trainer's held-out evaluation samples with the trainer's own engine (``engine_view``).

This module is the one place that reads ``use_vllm``: everything else passes the setting on.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import SamplingSettings
from .generation import GenerationBackend, TransformersGenerator
from .vllm_colocate import VLLMColocateGenerator
from .vllm_common import VLLMBackend, weights_version
from .vllm_server import VLLMServerGenerator

_SHARED_ENGINES: weakref.WeakKeyDictionary[torch.nn.Module, VLLMBackend] = weakref.WeakKeyDictionary()


def build_generator(
    model_getter: Callable[[], torch.nn.Module],
    tokenizer: Any,
    args: SamplingSettings,
    eos_token_ids: Sequence[int],
    *,
    version_getter: Callable[[], Any] | None = None,
    seed: int = 0,
    max_num_seqs: int = 256,
) -> GenerationBackend:
    """The backend ``args`` asks for. ``version_getter`` names the policy's weights; the vLLM
    backends push them to the engine when it changes (default: ``weights_version``)."""
    if args.use_vllm:
        version = version_getter or (lambda: weights_version(model_getter()))
        if args.vllm_mode == "server":
            return VLLMServerGenerator(
                model_getter, tokenizer, args, eos_token_ids, version_getter=version, seed=seed
            )
        return VLLMColocateGenerator(
            model_getter,
            tokenizer,
            args,
            eos_token_ids,
            version_getter=version,
            seed=seed,
            max_num_seqs=max_num_seqs,
        )
    return TransformersGenerator(model_getter, tokenizer, args, eos_token_ids)


def engine_view(generator: GenerationBackend, settings: SamplingSettings) -> GenerationBackend | None:
    """``generator``'s engine sampling with ``settings``' sampling fields (a trainer's vLLM engine,
    shared with its held-out evaluation), or None where it has no engine to share (``generate()``
    on the policy): the caller then samples with a backend of its own."""
    if isinstance(generator, VLLMBackend):
        view: GenerationBackend = generator.with_settings(settings)
        return view
    return None


def sampling_generator(
    model: torch.nn.Module,
    tokenizer: Any,
    settings: SamplingSettings,
    eos_token_ids: Sequence[int],
    *,
    seed: int = 0,
) -> GenerationBackend:
    """A backend for sampling from ``model`` outside training, with ``settings``' sampling
    fields; with ``use_vllm`` a view of the one engine kept for this model."""
    if not settings.use_vllm:
        return build_generator(lambda: model, tokenizer, settings, eos_token_ids)
    shared = _SHARED_ENGINES.get(model)
    if shared is None or shared.args.vllm_mode != settings.vllm_mode:
        ref = weakref.ref(model)  # the engine must not keep its model (the dictionary's key) alive
        built = build_generator(
            _dereference(ref), tokenizer, settings, eos_token_ids, seed=seed, max_num_seqs=64
        )
        if not isinstance(built, VLLMBackend):
            raise TypeError(f"use_vllm=True built a {type(built).__name__}, not a vLLM backend")
        shared = _SHARED_ENGINES[model] = built
    view = shared.with_settings(settings)
    view.seed = seed
    return view


def _dereference(ref: weakref.ReferenceType[torch.nn.Module]) -> Callable[[], torch.nn.Module]:
    """A model getter over a weak reference; it fails plainly once the model is gone."""

    def model() -> torch.nn.Module:
        target = ref()
        if target is None:
            raise RuntimeError("the model this vLLM engine samples from no longer exists")
        return target

    return model


__all__ = ["build_generator", "engine_view", "sampling_generator", "weights_version"]
