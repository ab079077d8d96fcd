"""sdpo_agent.losses: reference values, brute-force comparisons and gradient checks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sdpo_agent import losses as L
from sdpo_agent import rewards as R

S_PROBS = (0.5, 0.3, 0.2)
T_PROBS = (0.2, 0.6, 0.2)
FULL_REFERENCE = {0.0: 0.232630162, 0.25: 0.043549254, 0.5: 0.058692013, 1.0: 0.250201212}
TOP2_REFERENCE = {0.0: 0.290787702, 0.5: 0.073365016, 1.0: 0.312751515}
TOKEN_LEVEL_REFERENCE = 0.834530355
ALPHAS = (0.0, 0.25, 0.5, 0.7, 1.0)
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _reference_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """[1, 1, 3] float64 logits whose softmax is exactly S / T (log-probs are valid logits)."""
    s = torch.tensor(S_PROBS, dtype=torch.float64).log().view(1, 1, 3)
    t = torch.tensor(T_PROBS, dtype=torch.float64).log().view(1, 1, 3)
    return s, t


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- numpy brute force


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_divergence(s: np.ndarray, t: np.ndarray, alpha: float) -> float:
    """Loop over the support, straight from the definitions."""
    if alpha == 0.0:
        return sum(math.exp(t[k]) * (t[k] - s[k]) for k in range(len(s)))
    if alpha == 1.0:
        return sum(math.exp(s[k]) * (s[k] - t[k]) for k in range(len(s)))
    total = 0.0
    for k in range(len(s)):
        m = math.log((1 - alpha) * math.exp(s[k]) + alpha * math.exp(t[k]))
        total += (1 - alpha) * math.exp(s[k]) * (s[k] - m) + alpha * math.exp(t[k]) * (t[k] - m)
    return total


def np_per_token_loss(zs, zt, ids, *, full, alpha=1.0, topk=None, add_tail=False, temperature=1.0):
    zs, zt = np.asarray(zs) / temperature, np.asarray(zt) / temperature
    b_size, t_size, _ = zs.shape
    out = np.zeros((b_size, t_size))
    for b in range(b_size):
        for t in range(t_size):
            s, tau = np_log_softmax(zs[b, t]), np_log_softmax(zt[b, t])
            if topk is not None:
                idx = sorted(range(len(s)), key=lambda v, row=zs[b, t]: -row[v])[:topk]
                a, c = s[idx], tau[idx]
                if add_tail:
                    a = np.append(a, math.log(1 - math.exp(min(math.log(np.exp(a).sum()), -1e-7))))
                    c = np.append(c, math.log(1 - math.exp(min(math.log(np.exp(c).sum()), -1e-7))))
                else:
                    a, c = a - math.log(np.exp(a).sum()), c - math.log(np.exp(c).sum())
                out[b, t] = np_divergence(a, c, alpha)
            elif full:
                out[b, t] = np_divergence(s, tau, alpha)
            else:
                y = ids[b, t]
                out[b, t] = (s[y] - tau[y]) * s[y]
    return out


def np_aggregate(loss, mask, loss_type, max_len=None):
    loss, mask = np.asarray(loss, dtype=np.float64), np.asarray(mask, dtype=np.float64)
    if loss_type == "grpo":
        rows = []
        for b in range(loss.shape[0]):
            num = sum(loss[b, t] * mask[b, t] for t in range(loss.shape[1]))
            rows.append(num / max(1.0, mask[b].sum()))
        return sum(rows) / len(rows)
    num = sum(loss[b, t] * mask[b, t] for b in range(loss.shape[0]) for t in range(loss.shape[1]))
    if loss_type in ("bnpo", "dapo"):
        return num / max(1.0, mask.sum())
    return num / (loss.shape[0] * max_len)


def np_policy_loss(logp, old, adv, mask, eps_low, eps_high, level, beta=0.0, ref=None):
    logp, old, mask = np.asarray(logp), np.asarray(old), np.asarray(mask, dtype=np.float64)
    out = np.zeros_like(logp)
    for b in range(logp.shape[0]):
        seq_r = sum((logp[b, t] - old[b, t]) * mask[b, t] for t in range(logp.shape[1])) / max(
            1.0, mask[b].sum()
        )
        for t in range(logp.shape[1]):
            r = logp[b, t] - old[b, t] if level == "token" else seq_r
            ratio = math.exp(r)
            clipped = min(max(ratio, 1 - eps_low), 1 + eps_high)
            out[b, t] = -min(ratio * adv[b], clipped * adv[b])
            if beta:
                d = ref[b, t] - logp[b, t]
                out[b, t] += beta * (math.exp(d) - d - 1)
    return out


def random_batch(seed=0, b=3, t=5, v=7, scale=2.0):
    g = _rng(seed)
    zs = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).requires_grad_()
    zt = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).requires_grad_()
    ids = torch.randint(0, v, (b, t), generator=g)
    return zs, zt, ids


# ------------------------------------------------------------------ reference values


@pytest.mark.parametrize("alpha", sorted(FULL_REFERENCE))
def test_divergence_reference_values(alpha):
    s, t = _reference_logits()
    assert L.divergence(s, t, alpha).item() == pytest.approx(FULL_REFERENCE[alpha], abs=1e-9)


@pytest.mark.parametrize("alpha", sorted(FULL_REFERENCE))
def test_full_logit_reference_values(alpha):
    s, t = _reference_logits()
    # Scaled and shifted logits: the branch must normalise them itself.
    loss = L.self_distillation_per_token_loss(
        3.0 * s + 5.0,
        3.0 * t - 2.0,
        torch.zeros(1, 1, dtype=torch.long),
        full_logit_distillation=True,
        alpha=alpha,
        temperature=3.0,
    )
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(FULL_REFERENCE[alpha], abs=1e-9)


@pytest.mark.parametrize("alpha", sorted(TOP2_REFERENCE))
def test_top2_renormalised_reference_values(alpha):
    s, t = _reference_logits()
    loss = L.self_distillation_per_token_loss(
        s, t, torch.zeros(1, 1, dtype=torch.long), full_logit_distillation=True, alpha=alpha, topk=2
    )
    assert loss.item() == pytest.approx(TOP2_REFERENCE[alpha], abs=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_top2_with_tail_equals_full_vocabulary_value(alpha):
    # With V = 3 and K = 2 the tail bucket is exactly the third token's mass.
    s, t = _reference_logits()
    ids = torch.zeros(1, 1, dtype=torch.long)
    tail = L.self_distillation_per_token_loss(
        s, t, ids, full_logit_distillation=True, alpha=alpha, topk=2, add_tail=True
    )
    full = L.self_distillation_per_token_loss(s, t, ids, full_logit_distillation=True, alpha=alpha)
    assert tail.item() == pytest.approx(full.item(), abs=1e-12)
    if alpha in FULL_REFERENCE:
        assert tail.item() == pytest.approx(FULL_REFERENCE[alpha], abs=1e-9)


def test_token_level_reference_value():
    s, t = _reference_logits()
    loss = L.self_distillation_per_token_loss(
        s, t, torch.ones(1, 1, dtype=torch.long), full_logit_distillation=False
    )
    assert loss.item() == pytest.approx(TOKEN_LEVEL_REFERENCE, abs=1e-9)
    assert loss.item() == pytest.approx((math.log(0.3) - math.log(0.6)) * math.log(0.3), abs=1e-12)


def test_token_level_value_can_be_negative():
    s, t = _reference_logits()
    # y = 0: s_y = ln .5 > τ_y = ln .2, and s_y < 0, so the product is negative.
    loss = L.self_distillation_per_token_loss(
        s, t, torch.zeros(1, 1, dtype=torch.long), full_logit_distillation=False
    )
    assert loss.item() == pytest.approx((math.log(0.5) - math.log(0.2)) * math.log(0.5), abs=1e-12)
    assert loss.item() < 0


def test_divergence_ends_are_discontinuous_like_the_reference():
    s, t = _reference_logits()
    near_zero = L.divergence(s, t, 1e-9).item()
    assert near_zero == pytest.approx(0.0, abs=1e-6)
    assert L.divergence(s, t, 0.0).item() == pytest.approx(FULL_REFERENCE[0.0], abs=1e-9)


def test_divergence_rejects_alpha_outside_unit_interval():
    s, t = _reference_logits()
    with pytest.raises(ValueError):
        L.divergence(s, t, 1.5)


# -------------------------------------------------------------- brute force, random


@pytest.mark.parametrize("alpha", ALPHAS)
def test_divergence_matches_brute_force(alpha):
    g = _rng(1)
    s = torch.log_softmax(torch.randn(4, 6, generator=g, dtype=torch.float64) * 3, -1)
    t = torch.log_softmax(torch.randn(4, 6, generator=g, dtype=torch.float64) * 3, -1)
    got = L.divergence(s, t, alpha)
    want = [np_divergence(s[i].numpy(), t[i].numpy(), alpha) for i in range(4)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    assert (got >= -1e-12).all()  # a proper divergence on normalised inputs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize(
    "branch",
    [
        dict(full=False),
        *[dict(full=True, alpha=a) for a in ALPHAS],
        *[dict(full=True, alpha=a, topk=3) for a in ALPHAS],
        *[dict(full=True, alpha=a, topk=3, add_tail=True) for a in ALPHAS],
    ],
    ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()),
)
def test_per_token_loss_matches_brute_force(branch, temperature):
    zs, zt, ids = random_batch(seed=2)
    got = L.self_distillation_per_token_loss(
        zs,
        zt,
        ids,
        full_logit_distillation=branch["full"],
        alpha=branch.get("alpha", 1.0),
        topk=branch.get("topk"),
        add_tail=branch.get("add_tail", False),
        temperature=temperature,
    )
    want = np_per_token_loss(
        zs.detach().numpy(),
        zt.detach().numpy(),
        ids.numpy(),
        full=branch["full"],
        alpha=branch.get("alpha", 1.0),
        topk=branch.get("topk"),
        add_tail=branch.get("add_tail", False),
        temperature=temperature,
    )
    assert got.shape == ids.shape
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-9, atol=1e-12)


def test_topk_support_is_the_students_not_the_teachers():
    # Student prefers tokens 0 and 1, teacher prefers 2 and 3: the support must be {0, 1}.
    zs = torch.tensor([[[4.0, 3.0, 0.0, -1.0]]], dtype=torch.float64)
    zt = torch.tensor([[[-1.0, 0.0, 3.0, 4.0]]], dtype=torch.float64)
    ids = torch.zeros(1, 1, dtype=torch.long)
    got = L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=True, topk=2)
    a = torch.log_softmax(zs[0, 0, :2], -1)
    b = torch.log_softmax(zt[0, 0, :2], -1)
    assert got.item() == pytest.approx((a.exp() * (a - b)).sum().item(), abs=1e-12)


def test_topk_larger_than_vocabulary_is_the_full_distribution():
    zs, zt, ids = random_batch(seed=3, v=5)
    topk = L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=True, alpha=0.5, topk=50)
    full = L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=True, alpha=0.5)
    torch.testing.assert_close(topk, full)


def test_temperature_divides_logits_first():
    zs, zt, ids = random_batch(seed=4)
    for kwargs in (
        dict(full_logit_distillation=False),
        dict(full_logit_distillation=True, alpha=0.5, topk=3),
    ):
        scaled = L.self_distillation_per_token_loss(2.5 * zs, 2.5 * zt, ids, temperature=2.5, **kwargs)
        plain = L.self_distillation_per_token_loss(zs, zt, ids, **kwargs)
        torch.testing.assert_close(scaled, plain)
        other = L.self_distillation_per_token_loss(2.5 * zs, 2.5 * zt, ids, **kwargs)
        assert not torch.allclose(other, plain)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(full_logit_distillation=False),
        dict(full_logit_distillation=True, alpha=0.3),
        dict(full_logit_distillation=True, alpha=0.3, topk=2, add_tail=True),
    ],
)
def test_terms_return_the_students_sampled_token_log_probs(kwargs):
    zs, zt, ids = random_batch(seed=5)
    terms = L.self_distillation_terms(zs, zt, ids, temperature=0.8, **kwargs)
    want = torch.log_softmax(zs / 0.8, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(terms.student_token_log_probs, want)
    torch.testing.assert_close(
        terms.per_token_loss, L.self_distillation_per_token_loss(zs, zt, ids, temperature=0.8, **kwargs)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.999])
def test_token_level_requires_alpha_one(alpha):
    zs, zt, ids = random_batch()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "token-level distillation requires distillation_alpha=1.0; "
            "set full_logit_distillation=True for other divergences"
        ),
    ):
        L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=False, alpha=alpha)


def test_topk_requires_full_logit_distillation():
    zs, zt, ids = random_batch()
    with pytest.raises(ValueError, match="full_logit_distillation"):
        L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=False, topk=2)


def test_mismatched_logit_shapes_are_rejected():
    zs, zt, ids = random_batch()
    with pytest.raises(ValueError):
        L.self_distillation_per_token_loss(zs, zt[:, :, :4], ids, full_logit_distillation=True)


# --------------------------------------------------------------------- gradients


@pytest.mark.parametrize("alpha", ALPHAS)
def test_divergence_gradcheck(alpha):
    g = _rng(6)
    s = torch.log_softmax(torch.randn(3, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    t = torch.log_softmax(torch.randn(3, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: L.divergence(a, b, alpha), (s, t))


@pytest.mark.parametrize(
    "kwargs",
    [
        *[dict(alpha=a) for a in ALPHAS],
        *[dict(alpha=a, topk=3) for a in ALPHAS],
        *[dict(alpha=a, topk=3, add_tail=True) for a in ALPHAS],
        dict(alpha=0.5, topk=3, temperature=1.7),
    ],
    ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()),
)
def test_full_and_topk_branches_gradcheck(kwargs):
    # Logits spread wide enough that a 1e-6 perturbation never changes the top-k set.
    zs, zt, ids = random_batch(seed=7, b=2, t=3, v=6, scale=3.0)

    def fn(a, b):
        return L.self_distillation_per_token_loss(a, b, ids, full_logit_distillation=True, **kwargs)

    assert torch.autograd.gradcheck(fn, (zs, zt))


def test_token_level_gradient_is_the_score_function_estimate():
    zs, zt, ids = random_batch(seed=8)
    loss = L.self_distillation_per_token_loss(zs, zt, ids, full_logit_distillation=False, temperature=1.3)
    loss.sum().backward()
    s, tau = torch.log_softmax(zs.detach() / 1.3, -1), torch.log_softmax(zt.detach() / 1.3, -1)
    onehot = torch.nn.functional.one_hot(ids, zs.shape[-1]).double()
    coeff = s.gather(-1, ids.unsqueeze(-1)) - tau.gather(-1, ids.unsqueeze(-1))
    # d s_y / d z = (onehot(y) − softmax(z/T)) / T, scaled by the stop-gradient log ratio.
    torch.testing.assert_close(zs.grad, coeff * (onehot - s.exp()) / 1.3)
    assert zt.grad is None or torch.count_nonzero(zt.grad) == 0


def test_token_level_gradcheck_with_frozen_ratio():
    # gradcheck on a wrapper where the stop-gradient coefficient is a constant: then the
    # analytic and numerical derivatives of the branch must agree.
    zs, zt, ids = random_batch(seed=9, b=2, t=3, v=5)
    coeff = (L.selective_log_softmax(zs, ids) - L.selective_log_softmax(zt, ids)).detach()

    def fn(a):
        loss = L.self_distillation_per_token_loss(a, zt.detach(), ids, full_logit_distillation=False)
        s_y = L.selective_log_softmax(a, ids)
        # The branch's value is sg(s_y − τ_y)·s_y; replace its coefficient by the frozen one.
        return loss - (s_y - L.selective_log_softmax(zt.detach(), ids)).detach() * s_y + coeff * s_y

    assert torch.autograd.gradcheck(fn, (zs,))


# --------------------------------------------------------------------- log-probs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selective_log_softmax_matches_log_softmax(dtype):
    g = _rng(10)
    logits = (torch.randn(3, 4, 11, generator=g) * 5).to(dtype).requires_grad_()
    ids = torch.randint(0, 11, (3, 4), generator=g)
    got = L.selective_log_softmax(logits, ids)
    want = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, want)
    (grad_got,) = torch.autograd.grad(got.sum(), logits)
    (grad_want,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(grad_got, grad_want)


def test_selective_log_softmax_upcasts_half_precision():
    g = _rng(11)
    logits = (torch.randn(2, 3, 50, generator=g) * 4).to(torch.bfloat16)
    ids = torch.randint(0, 50, (2, 3), generator=g)
    got = L.selective_log_softmax(logits, ids)
    assert got.dtype == torch.float32
    want = torch.log_softmax(logits.double(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_selective_log_softmax_rejects_mismatched_ids():
    with pytest.raises(ValueError):
        L.selective_log_softmax(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


# ------------------------------------------------------------------ IS clipping


def test_is_clip_caps_ratio_without_lower_bound_and_detaches():
    loss = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    student = torch.tensor([[0.0, math.log(1.5), 0.0, 50.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[0.0, 0.0, math.log(4.0), 0.0]], dtype=torch.float64)
    out = L.importance_sampling_clip(loss, student, old, clip=2.0)
    # ratios 1, 1.5, 0.25 (no lower cap), e^50 -> capped at 2.
    torch.testing.assert_close(out, torch.tensor([[1.0, 3.0, 0.75, 8.0]], dtype=torch.float64))
    out.sum().backward()
    assert student.grad is None
    torch.testing.assert_close(loss.grad, torch.tensor([[1.0, 1.5, 0.25, 2.0]], dtype=torch.float64))


def test_is_clip_clamps_log_ratio_at_twenty():
    loss = torch.ones(1, 2, dtype=torch.float64)
    student = torch.tensor([[100.0, -100.0]], dtype=torch.float64)
    out = L.importance_sampling_clip(loss, student, torch.zeros_like(student), clip=float("inf"))
    torch.testing.assert_close(out, torch.tensor([[math.exp(20), math.exp(-20)]], dtype=torch.float64))


def test_is_clip_is_a_no_op_without_old_log_probs_or_clip():
    loss = torch.randn(2, 3)
    assert L.importance_sampling_clip(loss, torch.randn(2, 3), None, 2.0) is loss
    assert L.importance_sampling_clip(loss, torch.randn(2, 3), torch.randn(2, 3), None) is loss


def test_is_clip_rejects_non_positive_clip():
    with pytest.raises(ValueError):
        L.importance_sampling_clip(torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), 0.0)


# ------------------------------------------------------------------- aggregation


def _loss_and_mask(seed=12):
    g = _rng(seed)
    loss = torch.randn(4, 6, generator=g, dtype=torch.float64)
    mask = (torch.rand(4, 6, generator=g) > 0.4).double()
    mask[2] = 0.0  # a fully masked row must not divide by zero
    return loss, mask


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_aggregate_matches_brute_force(loss_type):
    loss, mask = _loss_and_mask()
    got = L.aggregate(loss, mask, loss_type, max_completion_length=9)
    assert got.item() == pytest.approx(np_aggregate(loss.numpy(), mask.numpy(), loss_type, 9), abs=1e-12)


def test_aggregate_types_differ_where_they_should():
    loss, mask = _loss_and_mask()
    values = {lt: L.aggregate(loss, mask, lt, 9).item() for lt in LOSS_TYPES}
    assert values["bnpo"] == values["dapo"]
    assert values["grpo"] != pytest.approx(values["bnpo"])
    assert values["dr_grpo"] != pytest.approx(values["bnpo"])


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_aggregate_of_all_masked_is_zero_and_finite(loss_type):
    loss = torch.randn(2, 3, requires_grad=True)
    out = L.aggregate(loss, torch.zeros(2, 3), loss_type, max_completion_length=3)
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(loss.grad).all()


def test_aggregate_accepts_bool_and_long_masks():
    loss, mask = _loss_and_mask()
    want = L.aggregate(loss, mask, "grpo")
    torch.testing.assert_close(L.aggregate(loss, mask.bool(), "grpo"), want)
    torch.testing.assert_close(L.aggregate(loss, mask.long(), "grpo"), want)


def test_aggregate_validates_arguments():
    loss, mask = _loss_and_mask()
    with pytest.raises(ValueError, match="max_completion_length"):
        L.aggregate(loss, mask, "dr_grpo")
    with pytest.raises(ValueError, match="loss_type"):
        L.aggregate(loss, mask, "sum")


def test_token_mean_is_the_masked_token_average():
    loss, mask = _loss_and_mask()
    want = (loss.numpy() * mask.numpy()).sum() / mask.numpy().sum()
    assert L.token_mean(loss, mask).item() == pytest.approx(want, abs=1e-12)
    assert L.token_mean(loss, torch.zeros_like(mask)).item() == 0.0


# ------------------------------------------------------------------ combination


def test_combine_losses():
    pg, d = torch.tensor(0.6), torch.tensor(2.0)
    assert L.combine_losses("distillation_only", None, d, 0.5, 4).item() == pytest.approx(0.25)
    assert L.combine_losses("distillation_only", pg, d, 1.0, 1).item() == pytest.approx(2.0)
    assert L.combine_losses("hybrid", pg, d, 0.5, 2).item() == pytest.approx((0.6 + 1.0) / 2)
    assert L.combine_losses("hybrid", pg, d, 3.0, 1).item() == pytest.approx(0.6 + 6.0)  # w > 1 additive
    with pytest.raises(ValueError):
        L.combine_losses("hybrid", None, d, 1.0, 1)
    with pytest.raises(ValueError):
        L.combine_losses("mixed", pg, d, 1.0, 1)
    with pytest.raises(ValueError):
        L.combine_losses("hybrid", pg, d, 1.0, 0)


# ------------------------------------------------------------------- advantages


def _reference_group_advantages(rewards: torch.Tensor, g: int, mode: str) -> torch.Tensor:
    """The reference (TRL GRPO) formula, for inputs without invalid entries."""
    mean = rewards.view(-1, g).mean(1).repeat_interleave(g)
    adv = rewards - mean
    if mode == "group":
        std = rewards.view(-1, g).std(1).repeat_interleave(g) if g > 1 else torch.zeros_like(rewards)
        adv = adv / (std + 1e-4)
    elif mode == "batch":
        adv = adv / (rewards.std() + 1e-4)
    return adv


@pytest.mark.parametrize("mode", ["group", "batch", "none"])
def test_group_advantages_match_reference_formula(mode):
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 1.0, 1.0, 3.0])
    adv, valid = R.group_advantages(rewards, 4, mode)
    torch.testing.assert_close(adv, _reference_group_advantages(rewards, 4, mode))
    assert valid.dtype == torch.bool and valid.all()


def test_group_advantages_group_values_by_hand():
    adv, _ = R.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 2, "group")
    s = math.sqrt(0.5)  # unbiased std of (1, 0)
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-4))


def test_scale_rewards_bools_map_to_group_and_none():
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0])
    torch.testing.assert_close(
        R.group_advantages(rewards, 2, True)[0], R.group_advantages(rewards, 2, "group")[0]
    )
    torch.testing.assert_close(
        R.group_advantages(rewards, 2, False)[0], R.group_advantages(rewards, 2, "none")[0]
    )
    with pytest.raises(ValueError):
        R.group_advantages(rewards, 2, "global")


def test_single_generation_gives_zero_advantages():
    adv, _ = R.group_advantages(torch.tensor([1.0, 0.0, 5.0]), 1, "group")
    assert torch.equal(adv, torch.zeros(3))


def _brute_force_invalid(rewards, valid, g, mode):
    """Loops over valid entries only; invalid ones get 0."""
    n = len(rewards)
    out = [0.0] * n
    all_valid = [rewards[i] for i in range(n) if valid[i]]
    batch_std = float(np.std(all_valid, ddof=1)) if len(all_valid) >= 2 else 0.0
    for start in range(0, n, g):
        members = [i for i in range(start, start + g) if valid[i]]
        if not members:
            continue
        values = [rewards[i] for i in members]
        mean = sum(values) / len(values)
        group_std = float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
        for i in members:
            a = rewards[i] - mean
            if mode == "group":
                a /= group_std + 1e-4
            elif mode == "batch":
                a /= batch_std + 1e-4
            out[i] = a
    return out


@pytest.mark.parametrize("mode", ["group", "batch", "none"])
def test_group_advantages_exclude_invalid_entries(mode):
    rewards = [1.0, None, 0.0, 0.5, None, None, None, None, 2.0, None, 0.0, 0.0, None, 3.0, 1.0, 1.0]
    valid = [r is not None for r in rewards]
    adv, got_valid = R.group_advantages(rewards, 4, mode)
    filled = [0.0 if r is None else r for r in rewards]
    np.testing.assert_allclose(
        adv.numpy(), _brute_force_invalid(filled, valid, 4, mode), rtol=1e-5, atol=1e-6
    )
    assert got_valid.tolist() == valid
    assert torch.isfinite(adv).all()
    # An invalid entry must not act as a 0 reward: compare with the naive fill-in.
    naive, _ = R.group_advantages(torch.tensor(filled), 4, mode)
    assert not torch.allclose(adv, naive)


def test_group_advantages_nan_and_explicit_mask_are_equivalent():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.5])
    explicit = torch.tensor([1.0, 7.0, 0.0, 0.5])
    mask = torch.tensor([True, False, True, True])
    adv_nan, valid_nan = R.group_advantages(rewards, 4, "group")
    adv_mask, valid_mask = R.group_advantages(explicit, 4, "group", valid=mask)
    torch.testing.assert_close(adv_nan, adv_mask)
    assert torch.equal(valid_nan, mask) and torch.equal(valid_mask, mask)
    assert adv_nan[1].item() == 0.0


def test_group_with_one_valid_entry_gets_zero_advantage():
    adv, valid = R.group_advantages([None, 1.0, None], 3, "group")
    assert adv.tolist() == [0.0, 0.0, 0.0]
    assert valid.tolist() == [False, True, False]


def test_group_advantages_reject_bad_shapes():
    with pytest.raises(ValueError):
        R.group_advantages(torch.ones(5), 2, "group")


def test_weighted_rewards_skip_none_terms_and_flag_empty_rows():
    per_func = torch.tensor([[1.0, 2.0], [float("nan"), 2.0], [float("nan"), float("nan")]])
    rewards, valid = R.weighted_rewards(per_func, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(rewards, torch.tensor([4.5, 4.0, 0.0]))
    assert valid.tolist() == [True, True, False]


# ------------------------------------------------------------------ policy loss


def _policy_inputs(seed=13):
    g = _rng(seed)
    logp = (torch.randn(3, 5, generator=g, dtype=torch.float64) - 2).requires_grad_()
    old = logp.detach() + torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.4
    adv = torch.tensor([1.3, -0.7, 0.4], dtype=torch.float64)
    mask = (torch.rand(3, 5, generator=g) > 0.25).double()
    ref = logp.detach() + torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.3
    return logp, old, adv, mask, ref


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_policy_loss_matches_brute_force(loss_type, level, beta):
    logp, old, adv, mask, ref = _policy_inputs()
    per_token, loss = L.policy_loss(
        logp,
        old,
        adv,
        mask,
        epsilon=0.2,
        epsilon_high=0.28,
        importance_sampling_level=level,
        loss_type=loss_type,
        max_completion_length=7,
        beta=beta,
        ref_per_token_logps=ref,
    )
    want = np_policy_loss(
        logp.detach().numpy(), old.numpy(), adv.numpy(), mask.numpy(), 0.2, 0.28, level, beta, ref.numpy()
    )
    np.testing.assert_allclose(per_token.detach().numpy(), want, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(np_aggregate(want, mask.numpy(), loss_type, 7), abs=1e-12)


def test_policy_loss_clipping_actually_happens():
    # The inputs must exercise both sides of the clip, or the brute-force test proves little.
    logp, old, _, _, _ = _policy_inputs()
    ratio = (logp.detach() - old).exp()
    assert (ratio > 1.28).any() and (ratio < 0.8).any()


def test_epsilon_high_defaults_to_epsilon():
    logp, old, adv, mask, _ = _policy_inputs()
    kw = dict(importance_sampling_level="token", loss_type="dapo", max_completion_length=None)
    a = L.policy_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=None, **kw)[1]
    b = L.policy_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.2, **kw)[1]
    c = L.policy_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.5, **kw)[1]
    assert a.item() == b.item() != c.item()


def test_policy_loss_without_old_logps_is_on_policy_reinforce():
    logp, _, adv, mask, _ = _policy_inputs()
    per_token, loss = L.policy_loss(
        logp,
        None,
        adv,
        mask,
        epsilon=0.2,
        epsilon_high=None,
        importance_sampling_level="token",
        loss_type="bnpo",
        max_completion_length=None,
    )
    torch.testing.assert_close(per_token.detach(), -adv.view(-1, 1).expand(3, 5))
    loss.backward()
    # Ratio 1 in value, but the gradient of −A·e^{logp − sg(logp)} is −A per token.
    torch.testing.assert_close(logp.grad, -adv.view(-1, 1) * mask / mask.sum())


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_policy_loss_gradcheck(level, loss_type):
    logp, old, adv, mask, ref = _policy_inputs(seed=14)

    def fn(x):
        return L.policy_loss(
            x,
            old,
            adv,
            mask,
            epsilon=0.2,
            epsilon_high=0.28,
            importance_sampling_level=level,
            loss_type=loss_type,
            max_completion_length=6,
            beta=0.1,
            ref_per_token_logps=ref,
        )[1]

    assert torch.autograd.gradcheck(fn, (logp,))


def test_policy_loss_validates_arguments():
    logp, old, adv, mask, _ = _policy_inputs()
    kw = dict(epsilon=0.2, epsilon_high=None, loss_type="dapo", max_completion_length=None)
    with pytest.raises(ValueError, match="importance_sampling_level"):
        L.policy_loss(logp, old, adv, mask, importance_sampling_level="seq", **kw)
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        L.policy_loss(logp, old, adv, mask, importance_sampling_level="token", beta=0.1, **kw)
