"""``VLLMServerGenerator``: generation on a separate ``trl vllm-serve`` server (its own GPUs).

The protocol is TRL's, spoken through TRL's own ``VLLMClient``: completions from token-id
prompts on ``/v1/completions``, weights streamed over NCCL through vLLM's weight-transfer
engine, ``/reset_prefix_cache`` after each push. Rows that repeat a prompt (a group) go as one
prompt with ``n`` samples and one seed; vLLM gives each of the ``n`` its own offset of it.

NCCL needs a CUDA device on the trainer's side: on a CPU-only trainer the server generates
with the weights it started with, and a push is refused with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import SamplingSettings
from .vllm_common import (
    SampledRow,
    VLLMBackend,
    cut_row,
    plain_sampling,
    require_vllm,
    sampling_fields,
)


def server_url(args: SamplingSettings) -> str:
    return args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"


def connect(args: SamplingSettings) -> Any:
    """TRL's ``VLLMClient`` for the configured server, waiting up to ``vllm_server_timeout``."""
    require_vllm()
    try:
        from trl.generation.vllm_client import VLLMClient
    except ImportError as exc:
        raise ImportError(
            "vllm_mode='server' talks to `trl vllm-serve` through TRL's client: pip install trl"
        ) from exc
    try:
        return VLLMClient(
            base_url=args.vllm_server_base_url,
            host=args.vllm_server_host,
            server_port=args.vllm_server_port,
            group_port=args.vllm_group_port,
            connection_timeout=args.vllm_server_timeout,
        )
    except Exception as exc:  # ConnectionError, or an HTTP error from a server that is not vLLM
        raise ConnectionError(
            f"no vLLM server answered at {server_url(args)} within vllm_server_timeout="
            f"{args.vllm_server_timeout:g} s (start one with `trl vllm-serve --model <path>`): {exc}"
        ) from exc


class VLLMServerGenerator(VLLMBackend):
    """``GenerationBackend`` over a ``trl vllm-serve`` server; see the module docstring."""

    def __init__(
        self,
        model_getter: Callable[[], torch.nn.Module],
        tokenizer: Any,
        args: SamplingSettings,
        eos_token_ids: Sequence[int],
        *,
        version_getter: Callable[[], Any] | None = None,
        seed: int = 0,
        client: Any = None,
    ) -> None:
        super().__init__(
            model_getter, tokenizer, args, eos_token_ids, version_getter=version_getter, seed=seed
        )
        self._client = client
        self._state = _ServerState(self._version_getter())  # shared with ``with_settings`` views

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.args)
        return self._client

    def start(self) -> None:
        """Connect now: a server that does not answer fails the trainer's construction."""
        _ = self.client

    def close(self) -> None:
        """The server stays up (it is not ours); the NCCL group, if any, is closed."""
        if self._client is not None and self._state.communicator_ready:
            self._client.close_communicator()
            self._state.communicator_ready = False

    def push_weights(self) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"vllm_mode='server' pushes the policy to {server_url(self.args)} over NCCL, which needs a CUDA "
                "device on the trainer's side; this machine has none. Use vllm_mode='colocate' here."
            )
        client = self.client
        if not self._state.communicator_ready:
            client.init_communicator(device=torch.cuda.current_device())
            self._state.communicator_ready = True
        client.update_model_params(self._model_getter())
        client.reset_prefix_cache()

    def sync_weights(self) -> None:
        """Push the policy when its weights moved since the last push (before generating, and
        before the server scores a teacher: ``use_teacher_server``)."""
        version = self._version_getter()
        if version != self._state.synced_version:
            self.push_weights()
            self._state.synced_version = version

    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        self.last_support, self.last_logprobs = None, []
        if not prompt_ids:
            return []
        if max_new_tokens < 1:
            return [[] for _ in prompt_ids]
        self.sync_weights()
        fields = sampling_fields(self.args, max_new_tokens, self.eos_ids)
        k = self.support_topk if plain_sampling(fields) else 0
        rows = self._request(prompt_ids, fields, k, max_new_tokens)
        return self.keep(rows, k, next(self._model_getter().parameters()).device)

    def _request(self, prompt_ids, fields: dict[str, Any], k: int, max_new_tokens: int) -> list[SampledRow]:
        distinct: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompt_ids):
            distinct.setdefault(tuple(prompt), []).append(row)
        seeds = self.next_seeds(len(distinct))
        out: list[SampledRow | None] = [None] * len(prompt_ids)
        sampling = {key: value for key, value in fields.items() if key not in _CLIENT_ARGS}
        for seed, (prompt, rows) in zip(seeds, distinct.items()):
            result = self.client.generate(
                prompts=[list(prompt)],
                n=len(rows),
                repetition_penalty=fields["repetition_penalty"],
                temperature=fields["temperature"],
                top_p=fields["top_p"],
                top_k=fields["top_k"],
                min_p=fields["min_p"],
                max_tokens=max_new_tokens,
                logprobs=k,
                generation_kwargs={**sampling, "seed": seed},
            )
            for j, row in enumerate(rows):
                out[row] = _parse(result, j, self.eos_ids, max_new_tokens)
        return [row for row in out if row is not None]


_CLIENT_ARGS = {"n", "repetition_penalty", "temperature", "top_p", "top_k", "min_p", "max_tokens"}


def _parse(result: dict[str, Any], j: int, eos_ids: set[int], max_new_tokens: int) -> SampledRow:
    token_ids = result["completion_ids"][j]
    logprobs = (result.get("logprobs") or [None])[j] or [[math.nan]] * len(token_ids)
    ids_per_position = (result.get("logprob_token_ids") or [None])[j] or [[t] for t in token_ids]
    top = [dict(zip(ids, values)) for ids, values in zip(ids_per_position, logprobs)]
    token_logprobs = [position.get(t, math.nan) for t, position in zip(token_ids, top)]
    return cut_row(token_ids, token_logprobs, top, eos_ids, max_new_tokens)


class _ServerState:
    """Which weights version the server holds, and whether the NCCL group is up."""

    def __init__(self, synced_version: Any) -> None:
        self.synced_version = synced_version
        self.communicator_ready = False


__all__ = ["VLLMServerGenerator", "connect", "server_url"]
