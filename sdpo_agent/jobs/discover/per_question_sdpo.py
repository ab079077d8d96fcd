"""Test-time SDPO on one question: groups of attempts, each failure's feedback (and any
successful sibling) conditioning the EMA self-teacher, the policy distilled towards it."""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

from transformers import PrinterCallback, TrainerCallback

from ...config import SDPOConfig, check_field_names
from ...models.resolve import resolve_model
from ...rollout.batching import GenerationResult, Scores
from ...rollout.task_rows import index_dataset
from ...trainers.sdpo import SDPOTrainer
from .spec import Attempt, DiscoverySpec, UnitResult, attempt_of, first_success_index


def sdpo_config(spec: DiscoverySpec, seed: int, output_dir: str):
    """The test-time SDPO config: one group of G attempts on the one question per step."""

    values: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": 1,  # set below, once the batch shape is known
        "per_device_train_batch_size": spec.group_size,
        "num_generations": spec.group_size,
        "max_completion_length": spec.max_completion_length,
        "max_prompt_length": None,  # a hard question's statement must never be cut
        "temperature": spec.temperature,
        "learning_rate": spec.learning_rate,
        # Constant: what step s does must not depend on how large the budget is.
        "lr_scheduler_type": "constant",
        "seed": seed,
        "full_logit_distillation": True,
        "distillation_topk": spec.topk,
        "distillation_alpha": 1.0,  # reverse KL(student ‖ teacher)
        "teacher_regularization": "ema",
        "include_environment_feedback": True,
        "shuffle_dataset": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "env_kwargs": dict(spec.env_kwargs),
    }
    check_field_names(SDPOConfig, spec.sdpo_overrides)
    values.update(spec.sdpo_overrides)
    args = SDPOConfig(**values)
    # Enough optimizer steps to generate the budget, whatever the overrides do to the batch
    # shape (gradient accumulation, num_iterations reusing a generation batch).
    per_step = (
        args.generation_batch_size
        * args.gradient_accumulation_steps
        / (args.steps_per_generation * args.num_iterations)
    )
    args.max_steps = max(1, math.ceil(spec.budget / per_step))
    return args


def run_sdpo(task_index: int, task_id: str, seed: int, spec: DiscoverySpec) -> UnitResult:
    """Test-time SDPO from the initial weights on one question; attempts recorded in order."""

    class Recorder(SDPOTrainer):
        """Records every rollout's outcome where the trainer scores it (before the loss)."""

        attempts: list[Attempt]
        first_text: str | None = None

        def reward(self, generation: GenerationResult) -> Scores:
            if generation.mode == "train":
                for text, rollout in zip(generation.completions, generation.rollouts):
                    self.attempts.append(attempt_of(rollout.feedback, rollout.env_reward))
                    if self.attempts[-1].success and self.first_text is None:
                        self.first_text = text
            return super().reward(generation)

    class StopWhenFound(TrainerCallback):
        def __init__(self, trainer: Recorder) -> None:
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            attempts = self.trainer.attempts
            found = first_success_index([a.success for a in attempts], spec.budget) is not None
            if (found and spec.stop_at_first_success) or len(attempts) >= spec.budget:
                control.should_training_stop = True

    start = time.monotonic()
    model, tokenizer = resolve_model(spec.model)  # fresh initial weights for every question × seed
    with tempfile.TemporaryDirectory(prefix="sdpo-discover-") as tmp:
        args = sdpo_config(spec, seed, tmp)
        trainer = Recorder(
            model=model,
            args=args,
            env=spec.env,
            # The trainer cycles through this as often as max_steps needs.
            train_dataset=index_dataset([task_index] * (args.generation_batch_size // args.num_generations)),
            processing_class=tokenizer,
        )
        trainer.attempts = []
        trainer.remove_callback(PrinterCallback)  # one line per unit is printed by the caller
        trainer.add_callback(StopWhenFound(trainer))
        trainer.train()
    steps = [
        {k: v for k, v in record.items() if k in _STEP_METRICS}
        for record in trainer.state.log_history
        if "success_rate" in record
    ]
    return UnitResult(
        "sdpo",
        task_id,
        task_index,
        seed,
        spec.budget,
        trainer.attempts[: spec.budget],
        wall_s=time.monotonic() - start,
        first_success_text=trainer.first_text,
        extra={"steps": steps},
    )


_STEP_METRICS = {
    "step",
    "success_rate",
    "distillation_loss",
    "self_distillation/teacher_student_kl",
    "completions/mean_length",
    "learning_rate",
}
