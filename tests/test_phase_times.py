"""Where a step's time goes: PhaseTimes alone, and the trainers' on_step_phases hook."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.rollout.phase_times import PhaseTimes
from tests.trainer_kit import FAST, length_trainer


def test_phases_nest_accumulate_and_are_taken_once():
    times = PhaseTimes()
    with times.measure("outer"):
        with times.measure("inner"):
            time.sleep(0.01)
        with times.measure("inner"):
            pass
    taken = times.take()
    assert set(taken) == {"outer", "inner"}
    assert taken["outer"][0] >= taken["inner"][0] >= 0.01
    assert times.take() == {}


def test_a_phase_that_raises_is_still_counted():
    times = PhaseTimes()
    try:
        with times.measure("failing"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "failing" in times.take()


class Collect(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[dict[str, tuple[float, float]]] = []

    def on_step_phases(self, args, state, control, phases=None, **kwargs):
        self.steps.append(phases)


def _train(cls, config_cls, tmp_path, **config):
    model, tokenizer = build_tiny_model()
    args = config_cls(output_dir=str(tmp_path), max_steps=2, **FAST, **config)
    collect = Collect()
    trainer = length_trainer(cls, model, tokenizer, args, callbacks=[collect])
    trainer.train()
    return trainer, collect


def test_sdpo_reports_every_phase_of_each_step_and_logs_them(tmp_path):
    trainer, collect = _train(SDPOTrainer, SDPOConfig, tmp_path, include_environment_feedback=True)
    assert len(collect.steps) == 2
    for phases in collect.steps:
        expected = {"prepare", "generate", "loss", "student_forward", "teacher_forward", "training_step"}
        assert expected | {"teacher_update"} <= set(phases)
        wall = {name: seconds for name, (seconds, _cpu) in phases.items()}
        assert wall["prepare"] >= wall["generate"] > 0
        assert wall["training_step"] >= wall["loss"] >= wall["teacher_forward"] > 0
    logged = [entry for entry in trainer.state.log_history if "timing/generate_s" in entry]
    assert len(logged) == 2 and all(entry["timing/loss_s"] > 0 for entry in logged)


def test_grpo_reports_its_phases_without_a_teacher(tmp_path):
    _, collect = _train(GRPOTrainer, GRPOConfig, tmp_path)
    assert len(collect.steps) == 2
    for phases in collect.steps:
        assert {"prepare", "generate", "loss", "training_step"} <= set(phases)
        assert "teacher_forward" not in phases
