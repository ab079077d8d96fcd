"""The bfloat16-stored teacher: float32 arithmetic on rounded weights, an unbiased EMA, resume."""

from __future__ import annotations

import copy

import torch

from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.teacher import Teacher
from sdpo_agent.teacher_storage import CompactWeights, stochastic_round_to_bfloat16
from sdpo_agent.trainers.policy_logits import completion_logits
from tests.trainer_kit import StopAfterFirstStep, resumable_trainer


def bf16_rounded_copy(model):
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for p in rounded.parameters():
            if p.dim() >= 2:
                p.copy_(p.to(torch.bfloat16).float())
    return rounded


def test_stochastic_rounding_is_unbiased_and_lands_on_a_neighbour():
    lower = torch.tensor(1.0, dtype=torch.bfloat16)
    step = 2.0**-7  # bfloat16's spacing in [1, 2)
    x = torch.full((200_000,), 1.0 + 0.3 * step)
    rounded = stochastic_round_to_bfloat16(x, torch.Generator().manual_seed(0)).float()
    assert set(rounded.unique().tolist()) == {1.0, 1.0 + step}
    assert abs(rounded.mean().item() - x[0].item()) < 0.01 * step
    negative = stochastic_round_to_bfloat16(-x, torch.Generator().manual_seed(0)).float()
    assert abs(negative.mean().item() + x[0].item()) < 0.01 * step
    exact = torch.tensor([float(lower), -0.5, 3.0, 0.0])
    assert torch.equal(stochastic_round_to_bfloat16(exact).float(), exact)


def test_compact_model_computes_in_float32_with_rounded_weights():
    model, _ = build_tiny_model()
    compact = copy.deepcopy(model).eval()
    weights = CompactWeights(compact, torch.bfloat16)
    matrices = [p for p in compact.parameters() if p.dim() >= 2]
    assert matrices and all(p.untyped_storage().nbytes() <= 4 for p in matrices)
    assert weights.nbytes() == sum(p.numel() * 2 for p in matrices)
    expected_model = bf16_rounded_copy(model).eval()
    ids = torch.randint(3, 200, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(compact(input_ids=ids).logits, expected_model(input_ids=ids).logits)
        # Through the trainer's own completion forward too.
        mask = torch.ones_like(ids)
        got = completion_logits(compact, ids, mask, 3)
        torch.testing.assert_close(got, completion_logits(expected_model, ids, mask, 3))
    assert all(p.untyped_storage().nbytes() <= 4 for p in matrices)  # released after the calls


def test_compact_teacher_copies_without_touching_the_student():
    model, _ = build_tiny_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    teacher = Teacher("ema", model, 0.05, storage_dtype="bfloat16")
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) and p.untyped_storage().nbytes() == p.numel() * 4, name
    state = teacher.state_dict()
    for name, p in teacher.model.named_parameters():
        want = before[name].to(torch.bfloat16).float() if p.dim() >= 2 else before[name]
        assert torch.equal(state[name], want), name
        assert p.dim() < 2 or p.untyped_storage().nbytes() <= 4, name
    tied = teacher.model.get_input_embeddings().weight is teacher.model.get_output_embeddings().weight
    assert tied == (model.get_input_embeddings().weight is model.get_output_embeddings().weight)


def test_compact_ema_tracks_the_float32_ema_where_round_to_nearest_freezes():
    model, _ = build_tiny_model()
    teacher = Teacher("ema", model, 0.05, storage_dtype="bfloat16", seed=0)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    exact = {name: p.to(torch.bfloat16).float() for name, p in start.items()}
    # A drift far below half a bfloat16 step per update.
    with torch.no_grad():
        for _ in range(40):
            for name, p in model.named_parameters():
                p.add_(1e-5)
                exact[name] = 0.95 * exact[name] + 0.05 * p.detach()
            teacher.after_optimizer_step(model)
    state = teacher.state_dict()
    for name, param in model.named_parameters():
        if param.dim() < 2:
            continue
        drift = (state[name] - start[name].to(torch.bfloat16).float()).mean().item()
        want = (exact[name] - start[name].to(torch.bfloat16).float()).mean().item()
        assert want > 1e-4 and abs(drift - want) < 0.1 * want, name


def test_sdpo_trains_and_resumes_with_a_compact_teacher(tmp_path):
    def make(out, callbacks=None):
        return resumable_trainer(out, callbacks, teacher_storage_dtype="bfloat16")

    interrupted = make(tmp_path / "a", [StopAfterFirstStep()])
    initial = {k: v.clone() for k, v in interrupted.teacher.state_dict().items()}
    interrupted.train()
    saved = interrupted.teacher.state_dict()
    assert any(not torch.equal(initial[k], saved[k]) for k in saved)
    # EMA with rate 0.5 after one step: halfway between the start and the student, up to bf16 rounding.
    for name, p in interrupted.model.named_parameters():
        torch.testing.assert_close(saved[name], 0.5 * initial[name] + 0.5 * p.detach(), rtol=2**-7, atol=1e-6)
    resumed = make(tmp_path / "b")
    assert resumed.teacher.load(str(tmp_path / "a" / "checkpoint-1"))
    for name, value in resumed.teacher.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))
    assert resumed.state.global_step == 2


# ------------------------------------------------------------------ teacher_compute_dtype


def autocast_logits(model, ids):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(input_ids=ids).logits


def test_bf16_teacher_compute_is_autocast_of_the_teacher_weights():
    model, _ = build_tiny_model()
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(2))
    forward = lambda m: m(input_ids=ids).logits  # noqa: E731
    exact = Teacher("ema", model, 0.05).logits(forward, model)

    # Stored and computed in bfloat16: the linear layers take the stored tensors as they are.
    compact = Teacher("ema", model, 0.05, storage_dtype="bfloat16", compute_dtype="bfloat16")
    got = compact.logits(forward, model)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, autocast_logits(bf16_rounded_copy(model).eval(), ids))
    assert not torch.equal(got.float(), exact) and torch.allclose(got.float(), exact, atol=0.1)
    assert all(p.untyped_storage().nbytes() <= 4 for p in compact.model.parameters() if p.dim() >= 2)

    # Float32 copy, bfloat16 compute; and the teachers that run the student.
    full = Teacher("ema", model, 0.05, compute_dtype="bfloat16")
    assert torch.equal(full.logits(forward, model), autocast_logits(model.eval(), ids))
    none = Teacher("none", model, 0.05, compute_dtype="bfloat16")
    assert torch.equal(none.logits(forward, model), autocast_logits(model, ids))
    initial = copy.deepcopy(model).eval()
    region = Teacher("trust_region", model, 0.3, compute_dtype="bfloat16")
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)  # the policy moves away from the initial model
    want = torch.lerp(autocast_logits(initial, ids), autocast_logits(model, ids), 0.3)
    assert torch.equal(region.logits(forward, model), want)
