"""SDPO and GRPO trainers end to end with the in-process `tiny` model."""

from __future__ import annotations

import os

import pytest
import torch
from datasets import Dataset

from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.rollout.batching import build_tensors
from sdpo_agent.teacher import TEACHER_FILE
from tests.trainer_kit import (
    FAST,
    FlakyEnv,
    ParityEnv,
    StopAfterFirstStep,
    TwoTurnEnv,
    chat_dataset,
    length_trainer,
    resumable_trainer,
)


def test_reference_usage_example_runs_unchanged(tmp_path, monkeypatch):
    """The reference page's example, with only the import line and the model changed."""
    monkeypatch.chdir(tmp_path)
    model, tokenizer = build_tiny_model()

    def reward_func(prompts, completions, **kwargs):
        return [1.0 if "4" in c[0]["content"] else 0.0 for c in completions]

    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "Solve 2+2."}]],
            "privileged_context": ["Your earlier answer used the wrong format."],
        }
    )
    training_args = SDPOConfig(
        output_dir="sdpo-model",
        distillation_topk=100,
        full_logit_distillation=True,
        include_environment_feedback=True,
    )
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=reward_func,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 3
    assert os.path.isdir(tmp_path / "sdpo-model")
    assert any("distillation_loss" in entry for entry in trainer.state.log_history)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_trains_and_changes_parameters(tmp_path, loss_type):
    model, tokenizer = build_tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, loss_type=loss_type, learning_rate=1e-2, **FAST)
    trainer = length_trainer(GRPOTrainer, model, tokenizer, args)
    trainer.train()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed > 0
    assert any("policy_loss" in entry for entry in trainer.state.log_history)


def test_ema_teacher_moves_exactly_by_the_update_rule(tmp_path):
    model, tokenizer = build_tiny_model()
    initial = [p.detach().clone() for p in model.parameters()]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        learning_rate=1e-2,
        teacher_update_rate=0.25,
        include_environment_feedback=True,
        **FAST,
    )
    trainer = length_trainer(SDPOTrainer, model, tokenizer, args)
    trainer.train()
    student = list(model.parameters())
    teacher = list(trainer.teacher.model.parameters())
    assert any(not torch.equal(s, i) for s, i in zip(student, initial))
    for t, s, i in zip(teacher, student, initial):
        torch.testing.assert_close(t, 0.75 * i + 0.25 * s.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("teacher", ["none", "trust_region"])
def test_other_teachers_train(tmp_path, teacher):
    model, tokenizer = build_tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        learning_rate=1e-2,
        teacher_regularization=teacher,
        teacher_update_rate=0.3,
        full_logit_distillation=True,
        distillation_alpha=0.5,
        include_environment_feedback=True,
        **FAST,
    )
    trainer = length_trainer(SDPOTrainer, model, tokenizer, args)
    trainer.train()
    assert (trainer.teacher.model is None) == (teacher == "none")
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_trust_region_teacher_interpolates_logits():
    from sdpo_agent.teacher import Teacher

    model, _ = build_tiny_model()
    teacher = Teacher("trust_region", model, 0.3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ids = torch.randint(0, 100, (2, 6))

    def forward(m):
        return m(input_ids=ids).logits

    expected = 0.7 * forward(teacher.model) + 0.3 * forward(model)
    torch.testing.assert_close(teacher.logits(forward, model), expected)


def test_callbacks_receive_reference_payloads(tmp_path):
    seen: dict[str, dict] = {}

    class Recorder:
        def on_teacher_context_built(self, **kwargs):
            seen["teacher"] = kwargs

        def on_self_distillation_batch_prepared(self, **kwargs):
            seen["prepared"] = kwargs

        def on_generation_batch_built(self, **kwargs):
            seen["generation"] = kwargs

        def __getattr__(self, name):  # the standard TrainerCallback events
            return lambda *a, **k: None

    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=1, include_environment_feedback=True, **FAST)
    trainer = length_trainer(SDPOTrainer, model, tokenizer, args, callbacks=[Recorder()])
    trainer.train()
    teacher = seen["teacher"]
    assert {
        "teacher_input_ids",
        "teacher_attention_mask",
        "completion_mask",
        "self_distillation_mask",
    } <= set(teacher)
    assert teacher["teacher_input_ids"].shape[0] == 4 and teacher["self_distillation_mask"].shape == (4,)
    assert {"prompt_ids", "completion_ids", "old_per_token_logps"} <= set(seen["prepared"])
    assert (
        seen["prepared"]["old_per_token_logps"] is None
    )  # GA % (steps_per_generation * num_iterations) == 0
    assert seen["generation"] == {
        **{k: seen["generation"][k] for k in ("args", "state", "control", "model", "processing_class")},
        "generate_every": 1,
        "steps_per_generation": 1,
    }


def test_env_supplies_rewards_and_feedback_to_the_teacher(tmp_path):
    captured = []

    class Capture:
        def on_teacher_context_built(self, teacher_input_ids, self_distillation_mask, **kwargs):
            captured.append((teacher_input_ids, self_distillation_mask))

        def __getattr__(self, name):
            return lambda *a, **k: None

    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=2, include_environment_feedback=True, **FAST)
    trainer = SDPOTrainer(
        model=model, args=args, env=lambda: ParityEnv(), processing_class=tokenizer, callbacks=[Capture()]
    )
    trainer.train()
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids, mask in captured for ids in ids]
    masks = torch.cat([mask for _, mask in captured])
    assert any("odd length" in t for t in texts)  # the env's own feedback reached the teacher
    assert masks.sum() > 0
    rewards = [e["rewards/env/mean"] for e in trainer.state.log_history if "rewards/env/mean" in e]
    assert rewards and all(0.0 <= r <= 1.0 for r in rewards)


def test_broken_env_does_not_stop_training_and_is_excluded(tmp_path):
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, judge_timeout_s=1.0, **FAST)
    trainer = GRPOTrainer(model=model, args=args, env=lambda: FlakyEnv(), processing_class=tokenizer)
    batch = trainer.build_batch([{"task_index": 0}] * 4 + [{"task_index": 1}] * 4, "train")
    errors = torch.tensor([1.0 - v for v in batch.valid.tolist()])
    assert errors.sum() > 0, "with 8 random lengths some rollouts should hit a failure mode"
    assert torch.all(batch.advantages[errors.bool()] == 0)
    trainer.train()
    rates = [e["judge_error_rate"] for e in trainer.state.log_history if "judge_error_rate" in e]
    assert rates and max(rates) > 0


def test_multi_turn_rollouts_are_token_exact_with_env_tokens_masked(tmp_path):
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        include_environment_feedback=True,
        **{**FAST, "max_completion_length": 60},
    )
    trainer = SDPOTrainer(model=model, args=args, env=lambda: TwoTurnEnv(), processing_class=tokenizer)
    sampled: list[list[int]] = []
    generate = trainer.generator.generate

    def recording(prompt_ids, max_new_tokens):
        out = generate(prompt_ids, max_new_tokens)
        sampled.extend(out)
        return out

    trainer.generator.generate = recording
    rollouts = trainer.rollout([{"task_index": 3}] * 4, "train").rollouts
    for rollout in rollouts:
        mask = rollout.completion_mask
        first_turn = rollout.completion_ids[: mask.index(0)] if 0 in mask else rollout.completion_ids
        assert first_turn in sampled  # kept exactly as sampled
        if rollout.turns == 2:
            env_tokens = [t for t, m in zip(rollout.completion_ids, mask) if m == 0]
            assert "RESULT: 42" in tokenizer.decode(env_tokens)
            assert mask[0] == 1 and mask[-1] == 1
    trainer.train()


def test_resume_restores_teacher_and_optimizer(tmp_path):
    make = resumable_trainer
    straight = make(tmp_path / "a")
    straight.train()
    interrupted = make(tmp_path / "b", [StopAfterFirstStep()])
    interrupted.train()
    checkpoint = tmp_path / "b" / "checkpoint-1"
    assert interrupted.state.global_step == 1 and (checkpoint / TEACHER_FILE).exists()
    resumed = make(tmp_path / "b")
    fresh_teacher = [p.clone() for p in resumed.teacher.model.parameters()]
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 2
    assert not all(torch.equal(a, b) for a, b in zip(fresh_teacher, resumed.teacher.model.parameters()))
    # Same data order, RNG, optimizer and teacher state: it ends where the uninterrupted run ended.
    for a, b in zip(straight.teacher.model.parameters(), resumed.teacher.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class OracleToolGenerator:
    """A generation backend that plays ToolUse-v0's reference tool-call path for even-numbered
    rollouts and answers wrongly for odd ones: real multi-turn episodes through the real env."""

    def __init__(self, tokenizer, tasks_by_question):
        self.tokenizer = tokenizer
        self.tasks = tasks_by_question
        self.calls = 0

    def generate(self, prompt_ids, max_new_tokens):
        from environments.tool_use.oracle import oracle_actions

        out = []
        for row, ids in enumerate(prompt_ids):
            text = self.tokenizer.decode(ids)
            question = next(q for q in self.tasks if q in text)
            turn = text.count("<tool_response>") and text.count("<|im_start|>assistant") - 1
            # Odd rows answer wrongly at once; only oracle episodes reach later turns.
            actions = (
                oracle_actions(self.tasks[question]) if row % 2 == 0 or turn else ["<answer>-1</answer>"]
            )
            action = actions[min(turn, len(actions) - 1)]
            out.append(
                self.tokenizer(action, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            )
        self.calls += 1
        return out


def test_sdpo_on_multi_turn_tool_use_env(tmp_path):
    import gymnasium as gym

    model, tokenizer = build_tiny_model()
    env = gym.make("sdpo/ToolUse-v0", dataset="procedural:db_lookup,convert").unwrapped
    rows = [env.tasks[i] for i in range(4)]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        include_environment_feedback=True,
        max_turns=4,
        max_prompt_length=None,
        env_kwargs={"tools_in_prompt": False},
        **{**FAST, "max_completion_length": 200},
    )
    trainer = SDPOTrainer(
        model=model,
        args=args,
        env="sdpo/ToolUse-v0",
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.generator = OracleToolGenerator(tokenizer, {r["question"]: r for r in rows})
    trainer.agent.generator = trainer.generator
    rollouts = trainer.rollout([rows[0]] * 4, "train").rollouts
    assert [r.feedback.success for r in rollouts] == [True, False, True, False]
    multi = rollouts[0]
    assert multi.turns >= 2 and 0 in multi.completion_mask
    env_text = tokenizer.decode([t for t, m in zip(multi.completion_ids, multi.completion_mask) if m == 0])
    assert "<tool_response>" in env_text
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["success_rate"] == 0.5 and log["num_turns"] > 1.0
    assert log["self_distillation/success_sample_fraction"] == 1.0  # every failure has a successful sibling


def test_a_groups_repeated_prompt_is_rendered_once(tmp_path, monkeypatch):
    model, tokenizer = build_tiny_model()
    trainer = length_trainer(GRPOTrainer, model, tokenizer, GRPOConfig(output_dir=str(tmp_path), **FAST))
    rendered, sent = [], []
    render = trainer._tokenize_prompt
    monkeypatch.setattr(trainer, "_tokenize_prompt", lambda p, t: rendered.append(p) or render(p, t))
    monkeypatch.setattr(trainer.agent, "run", lambda ids, contexts: sent.append(ids) or [])
    data = chat_dataset()
    rows = [data[i] for i in (0, 0, 0, 1, 1, 0)]
    trainer.rollout(rows, "train")
    assert rendered == [rows[0]["prompt"], rows[3]["prompt"], rows[5]["prompt"]]
    assert sent[0] == [render(row["prompt"], None) for row in rows]
    assert sent[0][0] is not sent[0][1]  # every row owns its list


def test_each_step_of_the_pipeline_runs_alone(tmp_path):
    """rollout -> reward -> tensors -> teacher context -> loss, called one by one."""
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), include_environment_feedback=True, **FAST)
    trainer = SDPOTrainer(model=model, args=args, env=lambda: ParityEnv(), processing_class=tokenizer)
    rows = [{"task_index": 3}] * 4  # one group of G = 4 on task 3

    generation = trainer.rollout(rows, "train")
    rollouts, prompts = generation.rollouts, generation.prompts
    assert len(rollouts) == 4 and all(p == prompts[0] for p in prompts)
    assert all(r.feedback is not None and 1 <= len(r.completion_ids) <= 12 for r in rollouts)
    assert generation.completions == [
        tokenizer.decode(r.completion_ids, skip_special_tokens=True) for r in rollouts
    ]
    assert generation.process_rows == slice(0, 4)  # one process: all the gathered rows are its own

    scores = trainer.reward(generation)
    rewards = scores.rewards
    assert rewards == [r.env_reward for r in rollouts] and scores.valid.all()
    assert abs(float(scores.advantages.sum())) < 1e-5  # group-centred

    batch = build_tensors(
        rollouts,
        scores,
        pad_id=tokenizer.pad_token_id,
        eos_ids=trainer.eos_token_ids,
        mask_truncated=False,
        device="cpu",
    )
    assert batch.teacher is None
    batch = trainer.extend_batch(batch, generation, scores)
    teacher = batch.require_teacher()
    failed = [i for i, r in enumerate(rewards) if r == 0.0]
    assert teacher.self_distillation_mask[failed].tolist() == [1.0] * len(failed)  # feedback for each
    teacher_text = tokenizer.decode(teacher.input_ids[failed[0]], skip_special_tokens=True) if failed else ""
    assert not failed or "odd length" in teacher_text

    trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets before each step
    loss = trainer.compute_loss(trainer.model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
