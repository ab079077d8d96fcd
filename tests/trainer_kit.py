"""What the trainer tests share: small settings, a chat dataset with a length reward, and tiny
environments (one that is judged, one that fails in every way, one with a tool turn)."""

from __future__ import annotations

import time

from datasets import Dataset
from transformers import TrainerCallback

from sdpo_agent import SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_envs import Feedback, TextEnv, Turn

FAST = {
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 12,
    "logging_steps": 1,
    "report_to": "none",
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "disable_tqdm": True,
}


def length_reward(prompts, completions, **kwargs):
    return [float(len(c[0]["content"]) % 2) for c in completions]


def chat_dataset(n: int = 8) -> Dataset:
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"Solve {i}+{i}."}] for i in range(n)],
            "privileged_context": ["Use the boxed format."] * n,
        }
    )


def length_trainer(cls, model, tokenizer, args, callbacks=None):
    """``cls`` (SDPOTrainer or GRPOTrainer) on ``chat_dataset()`` with ``length_reward``."""
    return cls(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


class ParityEnv(TextEnv):
    """Reward 1 for an even-length answer; feedback says why not."""

    default_dataset = [{"n": i} for i in range(16)]

    def build_messages(self, task):
        return [{"role": "user", "content": f"Say something of even length ({task['n']})."}]

    def judge(self, task, action):
        if len(action) % 2 == 0:
            return 1.0, Feedback.passed()
        return 0.0, Feedback(f"Your answer has odd length {len(action)}.", "wrong_answer")


class FlakyEnv(ParityEnv):
    """Raises, hangs, or returns garbage depending on the answer's length."""

    def respond(self, action):
        kind = len(action) % 4
        if kind == 1:
            raise RuntimeError("judge crashed")
        if kind == 2:
            time.sleep(3)
        if kind == 3:
            return "garbage"
        return super().respond(action)


class TwoTurnEnv(ParityEnv):
    """Turn 1 always gets a tool-style observation; turn 2 is judged."""

    observation_role = "user"

    def __init__(self, **kwargs):
        super().__init__(max_turns=3, **kwargs)

    def respond(self, action):
        if self.turn == 1:
            return Turn(
                0.0, Feedback("Tool ran.", "wrong_answer"), next_observation="RESULT: 42. Now answer."
            )
        return super().respond(action)


class StopAfterFirstStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step == 1


def resumable_trainer(out, callbacks=None, **config) -> SDPOTrainer:
    """Two steps of SDPO with a checkpoint after each (rate-0.5 EMA teacher, seed 7)."""
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(
        output_dir=str(out),
        max_steps=2,
        learning_rate=1e-2,
        teacher_update_rate=0.5,
        include_environment_feedback=True,
        seed=7,
        **{**FAST, "save_strategy": "steps", "save_steps": 1},
        **config,
    )
    return length_trainer(SDPOTrainer, model, tokenizer, args, callbacks=callbacks)
