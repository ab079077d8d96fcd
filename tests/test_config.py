"""SDPOConfig / GRPOConfig: the validation rules (every field and default against TRL 1.5 and the
installed TRL 1.16: tests/test_trl_compat.py)."""

from __future__ import annotations

import re

import pytest

from sdpo_agent import GRPOConfig, SDPOConfig


def test_reference_overrides_of_training_arguments(tmp_path):
    config = SDPOConfig(output_dir=str(tmp_path))
    assert config.remove_unused_columns is False
    assert config.gradient_checkpointing is True
    assert config.logging_steps == 10
    assert config.bf16 is False  # None resolves to "supported here": not on a CPU-only machine
    assert config.generation_batch_size == 8 and config.steps_per_generation == 1
    assert config.epsilon_high == config.epsilon
    assert SDPOConfig(output_dir=str(tmp_path), teacher_update_rate=None).resolved_teacher_update_rate == 0.05


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"scale_rewards": "rank"}, ["scale_rewards"]),
        ({"importance_sampling_level": "chunk"}, ["importance_sampling_level"]),
        ({"loss_type": "ppo"}, ["loss_type"]),
        ({"num_generations": 0, "per_device_train_batch_size": 1}, ["num_generations"]),
        ({"distillation_alpha": 1.5, "full_logit_distillation": True}, ["distillation_alpha"]),
        ({"distillation_topk": 0, "full_logit_distillation": True}, ["distillation_topk"]),
        ({"distillation_is_clip": 0.0}, ["distillation_is_clip"]),
        ({"distillation_weight": -1.0}, ["distillation_weight"]),
        ({"diagnostics_warning_interval": -1}, ["diagnostics_warning_interval"]),
        ({"diagnostics_flat_tolerance": -1e-3}, ["diagnostics_flat_tolerance"]),
        ({"per_device_train_batch_size": 6}, ["generation_batch_size", "num_generations"]),
        ({"teacher_regularization": "swa"}, ["teacher_regularization"]),
        ({"teacher_update_rate": 1.5}, ["teacher_update_rate"]),
        ({"ema_update_rate": -0.1}, ["ema_update_rate"]),
        ({"sdpo_policy_loss_mode": "mixed"}, ["sdpo_policy_loss_mode"]),
        ({"distillation_weight": 0.0}, ["distillation_only", "distillation_weight"]),
        ({"max_reprompt_len": 0}, ["max_reprompt_len"]),
        ({"teacher_storage_dtype": "float8"}, ["teacher_storage_dtype"]),
        ({"teacher_compute_dtype": "int8"}, ["teacher_compute_dtype"]),
        ({"distillation_alpha": 0.5}, ["distillation_alpha=1.0", "full_logit_distillation=True"]),
        ({"distillation_topk": 20}, ["distillation_topk", "full_logit_distillation"]),
    ],
)
def test_invalid_combinations_raise_naming_the_fields(tmp_path, kwargs, names):
    with pytest.raises(ValueError) as info:
        SDPOConfig(output_dir=str(tmp_path), **kwargs)
    for name in names:
        assert name in str(info.value)


def test_token_level_message_is_the_documented_one(tmp_path):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "token-level distillation requires distillation_alpha=1.0; set full_logit_distillation=True for other divergences"
        ),
    ):
        SDPOConfig(output_dir=str(tmp_path), distillation_alpha=0.0)


def test_valid_combinations_and_bool_scale_rewards(tmp_path):
    config = SDPOConfig(
        output_dir=str(tmp_path),
        full_logit_distillation=True,
        distillation_alpha=0.5,
        distillation_topk=5,
        sdpo_policy_loss_mode="hybrid",
        distillation_weight=0.0,
        teacher_regularization="trust_region",
        scale_rewards=False,
    )
    assert config.scale_rewards == "none"
    grpo = GRPOConfig(
        output_dir=str(tmp_path), loss_type="dr_grpo", gradient_accumulation_steps=2, num_iterations=2
    )
    assert grpo.steps_per_generation == 2 and grpo.old_logps_needed
    assert not GRPOConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2).old_logps_needed
