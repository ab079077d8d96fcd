"""Shared by the inbound-adapter tests: two SDPO steps on the in-process tiny model, what
the teacher was shown, and a scripted generation backend for deterministic multi-turn
episodes through the real agent loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from tests.trainer_kit import FAST


class TeacherTexts:
    """Records the decoded teacher inputs (the reprompts) of every step."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.texts: list[str] = []

    def on_teacher_context_built(self, teacher_input_ids: Any, **kwargs: Any) -> None:
        self.texts.extend(self.tokenizer.decode(ids, skip_special_tokens=True) for ids in teacher_input_ids)

    def __getattr__(self, name: str) -> Callable[..., None]:  # the standard TrainerCallback events
        return lambda *a, **k: None


def sdpo_trainer(
    env: Any, tmp_path: Any, *, steps: int = 2, **config: Any
) -> tuple[SDPOTrainer, TeacherTexts]:
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(
        output_dir=str(tmp_path), max_steps=steps, include_environment_feedback=True, **{**FAST, **config}
    )
    teacher = TeacherTexts(tokenizer)
    trainer = SDPOTrainer(model=model, args=args, env=env, processing_class=tokenizer, callbacks=[teacher])
    return trainer, teacher


def grpo_trainer(env: Any, tmp_path: Any, **config: Any) -> GRPOTrainer:
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, **{**FAST, **config})
    return GRPOTrainer(model=model, args=args, env=env, processing_class=tokenizer)


class ScriptedGenerator:
    """A generation backend that answers ``script(conversation_text, turn) -> text`` (then EOS)."""

    def __init__(self, tokenizer: Any, script: Callable[[str, int], str]) -> None:
        self.tokenizer = tokenizer
        self.script = script

    def generate(self, prompt_ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        out = []
        for ids in prompt_ids:
            text = self.tokenizer.decode(ids)
            turn = text.count("<|im_start|>assistant") - 1
            action = self.script(text, turn)
            out.append(
                self.tokenizer(action, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            )
        return out


def use_generator(trainer: Any, generator: ScriptedGenerator) -> None:
    trainer.generator = generator
    trainer.agent.generator = generator


def environment_text(tokenizer: Any, rollout: Any) -> str:
    """The tokens the environment added to a rollout (loss mask 0)."""
    return tokenizer.decode([t for t, m in zip(rollout.completion_ids, rollout.completion_mask) if m == 0])
