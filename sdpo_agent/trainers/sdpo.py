"""``SDPOTrainer``: distil the feedback-conditioned self-teacher back into the policy.

Per generation batch: rollouts → rewards → teacher reprompts (successful siblings and the
environment's feedback) → teacher context tokens. Per micro-batch: a teacher forward on the
rows that carry a teacher signal, then the self-distillation loss (plus the policy loss in
``hybrid`` mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from accelerate.utils import gather_object

from ..config import RolloutConfig, SDPOConfig
from ..config_compat import check_teacher_server
from ..losses import (
    SelfDistillationTerms,
    aggregate,
    combine_losses,
    importance_sampling_clip,
    selective_log_softmax,
    self_distillation_terms,
    token_mean,
)
from ..reprompt import build_teacher_messages, reprompt_metrics, tokenize_teacher_prompts
from ..rollout.batching import GenerationResult, RolloutBatch, Scores, TeacherContext
from ..rollout.phase_times import timed_phase
from ..rollout.vllm_server import VLLMServerGenerator
from ..teacher import Teacher
from .base import RolloutTrainer, zero_loss
from .policy_logits import completion_logits, student_logits
from .teacher_server import served_distillation_terms, served_teacher
from .trl_batch import from_trl_batch, is_trl_batch


class SDPOTrainer(RolloutTrainer):
    """Self-Distillation Policy Optimization; a drop-in for the reference ``SDPOTrainer``,
    with ``env=`` making environments the source of rewards and per-rollout feedback.

    >>> from sdpo_agent import SDPOConfig, SDPOTrainer
    >>> args = SDPOConfig(
    ...     output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
    ...     max_completion_length=8, include_environment_feedback=True, report_to=[], disable_tqdm=True,
    ... )
    >>> trainer = SDPOTrainer(model="tiny", args=args, env="sdpo/Math-v0")
    >>> trainer.train()  # prints the run's metrics, then returns them
    {...}
    TrainOutput(global_step=1, ...)
    """

    config_class = SDPOConfig
    algorithm = "sdpo"
    args: SDPOConfig

    def check_args(self, args: RolloutConfig) -> None:
        check_teacher_server(args)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = Teacher(
            self.args.teacher_regularization or "ema",
            self.accelerator.unwrap_model(self.model),
            self.args.resolved_teacher_update_rate,
            storage_dtype=self.args.teacher_storage_dtype,
            compute_dtype=self.args.teacher_compute_dtype,
            seed=self.args.seed,
        )

    # -- teacher context (at generation time) ------------------------------------------------------
    def extend_batch(self, batch: RolloutBatch, generation: GenerationResult, scores: Scores) -> RolloutBatch:
        mode = generation.mode
        per_rollout = self.env_factory is not None
        feedbacks: list[str | None]
        if per_rollout:
            feedbacks = [
                None if r.feedback is None or r.feedback.is_judge_error else r.feedback.text
                for r in generation.rollouts
            ]
        else:
            feedbacks = [row.get("privileged_context") for row in generation.rows]
        g = self._num_generations(mode)
        # A group's siblings may sit on other processes: build reprompts over the gathered batch.
        prompts, completions, rewards, feedbacks = (
            self._gather_list(x)
            for x in (generation.prompts, generation.completions, scores.rewards, feedbacks)
        )
        teacher_prompts, sd_mask = build_teacher_messages(
            prompts,
            completions,
            rewards,
            feedbacks,
            num_generations=g,
            args=self.args,
            per_rollout_feedback=per_rollout,
        )
        metrics = reprompt_metrics(
            rewards, feedbacks, sd_mask, num_generations=g, args=self.args, per_rollout_feedback=per_rollout
        )
        local = generation.process_rows
        teacher_prompts, sd_mask = teacher_prompts[local], sd_mask[local]
        context = tokenize_teacher_prompts(
            teacher_prompts,
            batch.completion_ids,
            batch.completion_attention_mask,
            self.tokenizer,
            max_reprompt_len=self.args.max_reprompt_len,
            chat_template_kwargs=self.args.chat_template_kwargs,
        )
        teacher = TeacherContext(
            input_ids=context.input_ids,
            attention_mask=context.attention_mask,
            self_distillation_mask=torch.tensor(
                sd_mask, dtype=torch.float32, device=batch.completion_ids.device
            ),
        )
        for key, value in metrics.items():
            self._metrics[mode][key].append(value)
        self.diagnostics.check_self_distillation(teacher.self_distillation_mask, mode)
        self.dispatch_event(
            "on_teacher_context_built",
            teacher_input_ids=teacher.input_ids,
            teacher_attention_mask=teacher.attention_mask,
            completion_mask=batch.completion_mask,
            self_distillation_mask=teacher.self_distillation_mask,
        )
        self.dispatch_event(
            "on_self_distillation_batch_prepared",
            old_per_token_logps=batch.old_per_token_logps,
            prompt_ids=batch.prompt_ids,
            completion_ids=batch.completion_ids,
            teacher_input_ids=teacher.input_ids,
            teacher_attention_mask=teacher.attention_mask,
            self_distillation_mask=teacher.self_distillation_mask,
        )
        return batch.with_teacher(teacher)

    def _gather_list(self, values: Sequence[Any]) -> list[Any]:
        if self.accelerator.num_processes == 1:
            return list(values)
        return list(gather_object(list(values)))

    # -- loss (per micro-batch) ----------------------------------------------------------------
    @timed_phase("loss")
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: RolloutBatch | Mapping[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """The loss of a micro-batch: ours, or TRL 1.16's batch dict (``trl_batch``)."""
        if return_outputs:
            raise ValueError("SDPOTrainer does not return outputs")
        inputs = from_trl_batch(inputs) if is_trl_batch(inputs) else inputs
        assert isinstance(inputs, RolloutBatch)
        args = self.args
        mode = "train" if model.training else "eval"
        convex = args.sdpo_policy_loss_mode == "convex"
        hybrid = args.sdpo_policy_loss_mode == "hybrid" or (convex and args.distillation_weight < 1)
        sd_rows = inputs.require_teacher().self_distillation_mask * inputs.valid
        rows = sd_rows.nonzero().squeeze(1)
        if convex and args.distillation_weight == 0:
            rows = rows[:0]  # TRL 1.16's pure policy gradient: no teacher forward

        student_rows = None if hybrid else rows  # distillation_only: rows without a teacher add nothing
        policy_loss: torch.Tensor | None = None
        student: torch.Tensor | None = None
        if rows.numel() or hybrid:
            with self.phase_times.measure("student_forward"):
                student = student_logits(model, inputs, args.temperature, student_rows)
            if hybrid:
                policy_loss = self.policy_gradient_loss(student, inputs)
                self._metrics[mode]["policy_loss"].append(policy_loss.item())
                student = student[rows]
        if rows.numel() and student is not None:
            distillation_loss = self._distillation_loss(model, inputs, rows, student, mode)
        else:
            distillation_loss = zero_loss(model)
            self._metrics[mode]["distillation_loss"].append(0.0)
        accumulation = self.current_gradient_accumulation_steps if model.training else 1
        return combine_losses(
            args.sdpo_policy_loss_mode or "distillation_only",
            policy_loss,
            distillation_loss,
            args.distillation_weight,
            accumulation,
        )

    def _distillation_loss(
        self,
        model: torch.nn.Module,
        inputs: RolloutBatch,
        rows: torch.Tensor,
        student: torch.Tensor,
        mode: str,
    ) -> torch.Tensor:
        """``student``: the student's logits on ``rows``."""
        args = self.args
        length = inputs.completion_length
        teacher = inputs.require_teacher()
        completion_ids = inputs.completion_ids[rows]
        teacher_ids = teacher.input_ids[rows]
        teacher_mask = teacher.attention_mask[rows]
        mask = inputs.completion_mask * (teacher.self_distillation_mask * inputs.valid).unsqueeze(1)
        teacher_logps: torch.Tensor | None = None
        if args.use_teacher_server:
            with self.phase_times.measure("teacher_forward"):
                terms, teacher_logps = self._served_terms(
                    student, completion_ids, teacher_ids, teacher_mask, mask[rows]
                )
        else:
            with self.phase_times.measure("teacher_forward"):
                teacher_logits = self.teacher.logits(
                    lambda m: completion_logits(m, teacher_ids, teacher_mask, length, args.temperature), model
                )
            terms = self_distillation_terms(
                student,
                teacher_logits.to(student.dtype),
                completion_ids,
                full_logit_distillation=bool(args.full_logit_distillation),
                alpha=args.distillation_alpha,
                topk=args.distillation_topk,
                add_tail=args.distillation_add_tail,
            )
        per_token = terms.per_token_loss
        old = inputs.old_per_token_logps
        if args.distillation_is_clip is not None and old is not None:
            per_token = importance_sampling_clip(
                per_token, terms.student_token_log_probs, old[rows], args.distillation_is_clip
            )
        full = torch.zeros(inputs.completion_ids.shape, dtype=per_token.dtype, device=per_token.device)
        full = full.index_put((rows,), per_token)
        # TRL 1.16 averages each row's token mean over the rows, whatever loss_type says.
        aggregation = "grpo" if args.trl_defaults == "1.16" else args.loss_type
        loss = aggregate(full, mask, aggregation, args.max_completion_length)
        with torch.no_grad():
            self._metrics[mode]["distillation_loss"].append(token_mean(full, mask).item())
            if teacher_logps is None:
                teacher_logps = selective_log_softmax(teacher_logits, completion_ids)
            row_mask = mask[rows]
            kl = token_mean(terms.student_token_log_probs - teacher_logps, row_mask)
            self._metrics[mode]["self_distillation/teacher_student_kl"].append(kl.item())
        return loss

    def _served_terms(
        self,
        student: torch.Tensor,
        completion_ids: torch.Tensor,
        teacher_ids: torch.Tensor,
        teacher_mask: torch.Tensor,
        required: torch.Tensor,
    ) -> tuple[SelfDistillationTerms, torch.Tensor]:
        """The distillation terms against the teacher the generation server scores, and τ_y
        (zero where not ``required``); the server first gets the policy's current weights."""
        args = self.args
        generator = self.generator
        if not isinstance(generator, VLLMServerGenerator):  # check_teacher_server makes it one
            raise TypeError(
                f"use_teacher_server needs the vLLM server generator, got {type(generator).__name__}"
            )
        generator.sync_weights()
        served = served_teacher(
            generator.client,
            teacher_ids,
            teacher_mask,
            completion_ids.shape[1],
            topk=args.distillation_topk or 1 if args.distillation_mode == "topk_logits" else 1,
            temperature=args.temperature,
        )
        terms = served_distillation_terms(
            student,
            completion_ids,
            served,
            required,
            mode=str(args.distillation_mode),
            alpha=args.distillation_alpha,
            add_tail=args.distillation_add_tail,
        )
        token = served.token_log_probs
        return terms, torch.where(required.bool(), token, torch.zeros_like(token))

    @property
    def success_threshold(self) -> float:
        return self.args.success_reward_threshold

    # -- teacher lifecycle ------------------------------------------------------------------------
    def after_optimizer_step(self) -> None:
        # TRL 1.16's teacher_sync_steps: the EMA moves on every N-th optimizer step (1: every step).
        if self.state.global_step % self.args.teacher_sync_steps == 0:
            self.teacher.after_optimizer_step(self.accelerator.unwrap_model(self.model))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            self.teacher.save(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.teacher.model is not None and not self.teacher.load(checkpoint):
            raise FileNotFoundError(
                f"checkpoint {checkpoint} has no teacher state; cannot resume the {self.teacher.mode} teacher"
            )


__all__ = ["SDPOConfig", "SDPOTrainer"]
