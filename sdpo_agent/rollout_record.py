"""What the sampler keeps of a batch for the training step: layer inputs and top-k supports.

While sampling, the fast decoder can keep every layer's input for each prompt and completion
token (``RolloutRecord``): under gradient checkpointing that is exactly what the training
forward would compute and keep, so the trainer skips that forward (``packed_forward``). For
top-k distillation it can also keep each completion position's top-k logits and log π(y)
(``TopKSupport``), so the loss needs no full LM-head pass for the student (``topk_head``).
A record is valid for exactly the tokens it was sampled with, under the weights ``version``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .decoder import DecoderView
from .packed_forward import LayerRecord, PackedLayout
from .topk_head import TopKSupport


@dataclass
class RolloutRecord:
    """Layer inputs (and optionally top-k supports) kept while sampling one batch, in ``PackedLayout`` terms.

    ``prefix[l]`` [D, P, d] and ``suffix[l]`` [B, S, d] are the inputs of layer l (the last
    entry: the final layer's output) for the distinct prompts and for the fed completion
    tokens; valid for exactly ``prompt_ids``/``completion_ids`` under weights ``version``.
    """

    prompt_ids: Tensor  # [B, P] left-padded
    prompt_mask: Tensor  # [B, P]
    completion_ids: Tensor  # [B, S + 1], pad after the end of each row
    owner: Tensor  # [B]
    prefix: list[Tensor]
    suffix: list[Tensor]
    version: Any
    support: TopKSupport | None = None  # per completion position [B, S + 1, ...], when asked for
    support_temperature: float = 1.0

    @classmethod
    def support_only(
        cls, completion_ids: Tensor, support: TopKSupport, temperature: float, version: Any
    ) -> RolloutRecord:
        """A record of top-k supports without layer inputs (what an inference engine returns)."""
        empty = torch.zeros((completion_ids.shape[0], 0), dtype=torch.long)
        return cls(
            prompt_ids=empty,
            prompt_mask=empty,
            completion_ids=completion_ids,
            owner=torch.arange(completion_ids.shape[0]),
            prefix=[],
            suffix=[],
            version=version,
            support=support,
            support_temperature=float(temperature),
        )

    def to(self, device: Any) -> RolloutRecord:
        """This record with its support and token ids on ``device`` (layer inputs stay put)."""
        support = self.support
        if support is not None:
            support = TopKSupport(
                *(t.to(device) for t in (support.values, support.indices, support.token_log_probs))
            )
        return dataclasses.replace(self, completion_ids=self.completion_ids.to(device), support=support)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.prefix, *self.suffix))

    def layer_record(self, rows: Tensor, layout: PackedLayout) -> LayerRecord | None:
        """The ``LayerRecord`` of ``layout``, built from generation-batch ``rows``; None when
        its tokens are not the ones fed here (another turn, truncation, other rows) or no layer
        inputs were kept."""
        if not self.suffix:
            return None
        if layout.prefix_ids.shape[1] != self.prompt_ids.shape[1]:
            return None
        if layout.suffix_ids.shape != (len(rows), self.completion_ids.shape[1] - 1):
            return None
        same = (
            torch.equal(self.prompt_ids[rows], layout.prefix_ids[layout.owner])
            and torch.equal(self.prompt_mask[rows].bool(), layout.prefix_mask[layout.owner].bool())
            and torch.equal(self.completion_ids[rows, :-1], layout.suffix_ids)
        )
        if not same:
            return None
        return LayerRecord(self.prefix, self.suffix, self.owner[rows[layout.prefix_rows]], rows)

    def topk_support(
        self, rows: Tensor, completion_ids: Tensor, k: int, temperature: float
    ) -> TopKSupport | None:
        """The recorded top-``k`` support of generation-batch ``rows`` for ``completion_ids``
        [R, T]; None when it was not recorded for this k and temperature or the tokens differ."""
        support = self.support
        if support is None or support.indices.shape[-1] != k or self.support_temperature != temperature:
            return None
        width = completion_ids.shape[1]
        if width > self.completion_ids.shape[1]:
            return None
        if not torch.equal(self.completion_ids[rows, :width], completion_ids):
            return None
        return TopKSupport(
            support.values[rows, :width], support.indices[rows, :width], support.token_log_probs[rows, :width]
        )


class Recorder:
    def __init__(self, view: DecoderView, b: int, max_new: int, device, dtype) -> None:
        width = max(max_new - 1, 0)
        self.prefix: list[Tensor] = []
        self.suffix = [
            torch.empty((b, width, view.hidden_size), dtype=dtype, device=device)
            for _ in range(len(view.layers) + 1)
        ]
        self.result: RolloutRecord | None = None

    def finish(
        self,
        ids: Tensor,
        mask: Tensor,
        new: Tensor,
        owner: Tensor,
        version: Any,
        support: SupportRecorder | None,
    ) -> None:
        fed = new.shape[1] - 1
        self.result = RolloutRecord(
            prompt_ids=ids,
            prompt_mask=mask,
            completion_ids=new,
            owner=owner,
            prefix=self.prefix,
            suffix=[t[:, :fed] for t in self.suffix],
            version=version,
            support=None if support is None else support.result(new.shape[1]),
            support_temperature=1.0 if support is None else support.temperature,
        )


class SupportRecorder:
    """Top-k of the temperature-scaled logits at every step, and log π of the drawn token."""

    def __init__(self, k: int, temperature: float) -> None:
        self.k, self.temperature = k, float(temperature)
        self.values: list[Tensor] = []
        self.indices: list[Tensor] = []
        self.token_log_probs: list[Tensor] = []
        self._scaled: Tensor | None = None
        self._log_normaliser: Tensor | None = None

    def observe(self, logits: Tensor) -> None:
        # A copy: the processors that follow may write into ``logits``.
        scaled = logits / self.temperature if self.temperature != 1.0 else logits.clone()
        values, indices = torch.topk(scaled, k=min(self.k, scaled.shape[-1]), dim=-1)
        self.values.append(values)
        self.indices.append(indices)
        self._scaled, self._log_normaliser = scaled, torch.logsumexp(scaled, dim=-1)

    def sampled(self, token: Tensor) -> None:
        picked = self._scaled.gather(-1, token.unsqueeze(-1)).squeeze(-1)
        self.token_log_probs.append(picked - self._log_normaliser)
        self._scaled = self._log_normaliser = None

    def result(self, steps: int) -> TopKSupport:
        return TopKSupport(
            torch.stack(self.values[:steps], 1),
            torch.stack(self.indices[:steps], 1),
            torch.stack(self.token_log_probs[:steps], 1),
        )


__all__ = ["Recorder", "RolloutRecord", "SupportRecorder"]
