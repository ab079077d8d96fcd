"""Each renamed setting, spelled the TRL 1.5 way and the TRL 1.16 way: the same run, the same losses."""

from __future__ import annotations

import pytest
import torch

from sdpo_agent import SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from tests.trainer_kit import FAST, chat_dataset, length_reward


def run(tmp_path, steps: int = 2, **settings):
    """Train the tiny model ``steps`` optimizer steps; (per-step logs, trainer, initial weights)."""
    model, tokenizer = build_tiny_model()
    initial = [p.detach().clone() for p in model.parameters()]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=steps,
        learning_rate=5e-2,
        lr_scheduler_type="constant",  # a run's first steps do not depend on its length
        include_environment_feedback=True,
        seed=3,
        **{**FAST, "max_completion_length": 8},
        **settings,
    )
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
    )
    trainer.train()
    logs = [
        {
            k: v
            for k, v in entry.items()
            if k in ("loss", "distillation_loss", "self_distillation/teacher_student_kl")
        }
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    assert len(logs) == steps
    return logs, trainer, initial


@pytest.mark.parametrize(
    ("trl_1_5", "trl_1_16"),
    [
        ({"full_logit_distillation": False}, {"distillation_mode": "sampled_token"}),
        (
            {"full_logit_distillation": True, "distillation_alpha": 0.5},
            {"distillation_mode": "full_logits", "distillation_alpha": 0.5},
        ),
        (
            {"full_logit_distillation": True, "distillation_topk": 5},
            {"distillation_mode": "topk_logits", "distillation_topk": 5},
        ),
        ({"teacher_regularization": "none"}, {"teacher_model_kind": "live"}),
        (
            {"teacher_regularization": "ema", "teacher_update_rate": 0.5},
            {"teacher_model_kind": "ema", "teacher_update_rate": 0.5},
        ),
        # The seed's nearest spelling of TRL 1.16's frozen initial teacher: an EMA that never moves.
        ({"teacher_regularization": "ema", "teacher_update_rate": 0.0}, {"teacher_model_kind": "base"}),
        ({"ema_update_rate": 0.5}, {"teacher_update_rate": 0.5}),
        (
            {"sdpo_policy_loss_mode": "convex", "distillation_weight": 0.5, "loss_type": "grpo"},
            {
                "trl_defaults": "1.16",
                "disable_dropout": False,
                "distillation_weight": 0.5,
                "loss_type": "grpo",
            },
        ),
    ],
)
def test_both_spellings_give_the_same_run(tmp_path, trl_1_5, trl_1_16):
    # Two steps where the teacher's weights differ between settings (the second sees an update).
    steps = 2 if any(name.startswith(("teacher", "ema")) for name in trl_1_5) else 1
    seed_logs, _, _ = run(tmp_path / "1.5", steps=steps, **trl_1_5)
    new_logs, _, _ = run(tmp_path / "1.16", steps=steps, **trl_1_16)
    assert new_logs == seed_logs
    assert any(entry["distillation_loss"] != 0.0 for entry in seed_logs)  # the teacher had something to say


def test_the_spellings_are_not_all_the_same_run(tmp_path):
    # The equivalence above could not fail if every setting gave one run: these two must differ.
    live, _, _ = run(tmp_path / "live", teacher_model_kind="live")
    base, _, _ = run(tmp_path / "base", teacher_model_kind="base")
    assert live[0] == base[0]  # step 1: the initial student is the current one
    assert live[1] != base[1]


def test_base_teacher_stays_the_initial_student(tmp_path):
    _, trainer, initial = run(tmp_path, teacher_model_kind="base", teacher_update_rate=0.5)
    assert trainer.teacher.model is not None
    for teacher, start in zip(trainer.teacher.model.parameters(), initial):
        assert torch.equal(teacher, start)
    assert any(not torch.equal(p, i) for p, i in zip(trainer.model.parameters(), initial))


def test_live_teacher_keeps_no_copy(tmp_path):
    _, trainer, _ = run(tmp_path, steps=1, teacher_model_kind="live")
    assert trainer.teacher.model is None


def test_teacher_sync_steps_moves_the_ema_every_nth_step(tmp_path):
    """N = 2: after step 1 the EMA teacher is still the initial model; step 2 moves it once,
    θ_T = 0.5·θ_0 + 0.5·θ_S(2); step 3 leaves it there."""
    teachers = {}
    for steps in (1, 2, 3):
        _, trainer, initial = run(
            tmp_path / str(steps), steps=steps, teacher_update_rate=0.5, teacher_sync_steps=2
        )
        teachers[steps] = [p.detach().clone() for p in trainer.teacher.model.parameters()]
        if steps == 2:
            student_at_2 = [p.detach().clone() for p in trainer.model.parameters()]
    assert all(torch.equal(t, i) for t, i in zip(teachers[1], initial))
    for t, i, s in zip(teachers[2], initial, student_at_2):
        torch.testing.assert_close(t, 0.5 * i + 0.5 * s, rtol=0, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(teachers[3], teachers[2]))
    assert any(not torch.equal(a, b) for a, b in zip(teachers[2], teachers[1]))


def test_trl_defaults_1_16_disables_dropout(tmp_path):
    model, tokenizer = build_tiny_model()
    model.model.layers[0].mlp.act_fn = torch.nn.Sequential(
        torch.nn.Dropout(0.3), model.model.layers[0].mlp.act_fn
    )
    args = SDPOConfig(output_dir=str(tmp_path), trl_defaults="1.16", **FAST)
    SDPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
    )
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
