"""``PolicyForward``: how a rollout trainer computes the logits of a batch's completions.

A mixin of ``RolloutTrainer`` (it reads ``self.args``, ``self.model``, ``self.accelerator``
and ``self.state``). Llama-family models go through our packed, prefix-shared forward,
reusing the layer inputs kept while sampling when they match (``packed_forward``,
``fast_generation``); other models through the library's forward.
"""

from __future__ import annotations

from typing import Any

import torch

from .decoder import DecoderView, view_for
from .generation import checkpointing_enabled, dropout_free, shared_prefix_logits
from .losses import selective_log_softmax
from .packed_forward import PackedLayout, packed_hidden
from .rollout_record import RolloutRecord
from .topk_head import TopKSupport


class PolicyForward:
    def completion_logits(
        self,
        model,
        input_ids,
        attention_mask,
        completion_length: int,
        *,
        record: RolloutRecord | None = None,
        record_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Temperature-scaled logits predicting each of the last ``completion_length`` tokens: [B, T, V].

        Llama-family models go through ``completion_hidden``; other models through the
        shared-prefix cache path of ``shared_prefix_logits`` where it applies, else one full
        forward. The same logits up to float rounding either way.
        """
        packed = self.completion_hidden(
            model, input_ids, attention_mask, completion_length, record=record, record_rows=record_rows
        )
        if packed is not None:
            view, hidden = packed
            logits = view.logits(hidden)
        else:
            logits = self._library_completion_logits(model, input_ids, attention_mask, completion_length)
        return logits / self.args.temperature if self.args.temperature != 1.0 else logits

    def completion_hidden(
        self,
        model,
        input_ids,
        attention_mask,
        completion_length: int,
        *,
        record: RolloutRecord | None = None,
        record_rows: torch.Tensor | None = None,
    ) -> tuple[DecoderView, torch.Tensor] | None:
        """(view, final hidden states [B, T, d] before the last norm) predicting each completion
        token, through ``packed_forward``; None when the model has no ``DecoderView``.

        Every distinct prompt is computed once; under gradient checkpointing our own
        per-layer checkpointing runs; and when ``record`` holds the layer inputs sampled for
        these rows (``record_rows`` of the generation batch) under the current weights, no
        forward runs at all before the backward.
        """
        view = view_for(model) if self.args.use_fast_decoder else None
        if view is None:
            return None
        prompt_ids, prompt_mask = input_ids[:, :-completion_length], attention_mask[:, :-completion_length]
        completion_ids = input_ids[:, -completion_length:]
        layout = PackedLayout.build(prompt_ids, prompt_mask, completion_ids)
        hidden = packed_hidden(
            view,
            layout,
            checkpoint=model.training and checkpointing_enabled(model),
            record=self._layer_record(model, record, record_rows, layout),
        )
        return view, layout.completion_rows(hidden)

    def _layer_record(self, model, record, rows, layout):
        if not self._record_applies(model, record, rows):
            return None
        return record.layer_record(rows, layout)

    def _record_applies(self, model, record: RolloutRecord | None, rows) -> bool:
        if record is None or rows is None or model is not self.accelerator.unwrap_model(self.model):
            return False
        # Sampled under other weights, or training-mode dropout would differ.
        return record.version == self.state.global_step and not (model.training and not dropout_free(model))

    def _recorded_topk(self) -> int:
        """k of the top-k support the sampler should record for the loss (0: none)."""
        return 0

    def recorded_support(
        self, model, batch: dict[str, Any], rows: torch.Tensor, k: int
    ) -> TopKSupport | None:
        """The policy's top-``k`` support on the batch's ``rows``, recorded while sampling under
        the current weights; None when there is no such record."""
        record, index = batch.get("rollout_record"), batch.get("row_index")
        index = None if index is None else index[rows]
        if not self._record_applies(model, record, index):
            return None
        return record.topk_support(index, batch["completion_ids"][rows], k, self.args.temperature)

    def _library_completion_logits(self, model, input_ids, attention_mask, completion_length: int):
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(
            min=0
        )  # as generate() does with left padding
        logits = shared_prefix_logits(
            model,
            input_ids,
            attention_mask,
            position_ids,
            prefix_length=input_ids.shape[1] - completion_length - 1,
            logits_to_keep=completion_length + 1,
        )
        if logits is None:
            logits = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                logits_to_keep=completion_length + 1,
                use_cache=False,
            ).logits
        return logits[:, :-1, :]

    def student_logits(self, model, batch: dict[str, Any], rows: torch.Tensor | None = None) -> torch.Tensor:
        """``completion_logits`` of the policy on the batch's (selected) rows, using the
        sampling-time layer record when it matches."""
        ids, mask, length, record, index = self._student_forward_args(batch, rows)
        return self.completion_logits(model, ids, mask, length, record=record, record_rows=index)

    def student_hidden(
        self, model, batch: dict[str, Any], rows: torch.Tensor | None = None
    ) -> tuple[DecoderView, torch.Tensor] | None:
        """``completion_hidden`` of the policy on the batch's (selected) rows."""
        ids, mask, length, record, index = self._student_forward_args(batch, rows)
        return self.completion_hidden(model, ids, mask, length, record=record, record_rows=index)

    def _student_forward_args(self, batch: dict[str, Any], rows: torch.Tensor | None):
        ids, mask = self._student_inputs(batch, rows)
        index = batch.get("row_index")
        if index is not None and rows is not None:
            index = index[rows]
        return ids, mask, batch["completion_ids"].shape[1], batch.get("rollout_record"), index

    def _student_inputs(self, batch: dict[str, Any], rows: slice | torch.Tensor | None = None):
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_attention_mask"]], dim=1)
        if rows is not None:
            ids, mask = ids[rows], mask[rows]
        return ids, mask

    def _record_budget(self) -> int:
        """Bytes of layer inputs worth keeping while sampling: half the policy's weights."""
        model = self.accelerator.unwrap_model(self.model)
        if not self.args.use_fast_decoder or view_for(model) is None:
            return 0
        return sum(p.numel() * p.element_size() for p in model.parameters()) // 2

    @torch.no_grad()
    def _old_logps(self, batch: dict[str, Any]) -> torch.Tensor:
        chunks = []
        step = self.args.per_device_train_batch_size
        for start in range(0, batch["completion_ids"].shape[0], step):
            rows = torch.arange(start, min(start + step, batch["completion_ids"].shape[0]))
            logits = self.student_logits(self.model, batch, rows)
            chunks.append(selective_log_softmax(logits, batch["completion_ids"][rows]))
        return torch.cat(chunks)
