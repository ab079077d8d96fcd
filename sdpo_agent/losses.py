"""Loss functions for SDPO and the GRPO family, as pure tensor functions.

Every function states its formula in the docstring. Notation (docs/algorithm.md):
z_S, z_T student/teacher logits at completion positions (row t predicts token t),
s = log_softmax(z_S), τ = log_softmax(z_T), y_t the sampled token, sg = stop-gradient,
m the loss mask (completion mask × self-distillation mask × validity).

Nothing here touches a model, a config object or a process group: the trainer passes
plain tensors and settings in and gets tensors back. Settings are checked with the configs'
own rules (``config.distillation_checks`` and friends), so a function called without a
config rejects what ``SDPOConfig`` rejects, with the same message.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .config import (
    IS_LEVELS,
    LOSS_TYPES,
    POLICY_LOSS_MODES,
    choice_check,
    distillation_checks,
    positive_check,
    raise_first_failure,
)

# Clamp of the log importance ratio before exp, so one stale token cannot overflow.
_IS_LOG_RATIO_BOUND = 20.0
# Upper bound on the top-k mass before computing the tail, so log(1 - mass) stays finite.
_TAIL_MAX_LOG_MASS = -1e-7


# --------------------------------------------------------------------------- log-probs


def selective_log_softmax(logits: Tensor, ids: Tensor) -> Tensor:
    """Log-probability of the chosen ids: log_softmax(logits)[..., ids].

        out[b, t] = logits[b, t, ids[b, t]] − logsumexp_v logits[b, t, v]

    Computed as gather − logsumexp one batch row at a time, so the full [B, T, V]
    log_softmax is never materialised and the logsumexp temporary is one row big.
    Half-precision logits are upcast per row to float32 (a bf16 logsumexp over a large
    vocabulary loses several bits); the result is then float32.
    """
    if logits.dim() < 2:
        raise ValueError(f"logits must have a vocabulary axis, got shape {tuple(logits.shape)}")
    if logits.shape[:-1] != ids.shape:
        raise ValueError(f"ids shape {tuple(ids.shape)} does not match logits {tuple(logits.shape)}")
    upcast = logits.dtype not in (torch.float32, torch.float64)
    if logits.dim() == 2 or logits.shape[0] == 0:
        rows = logits.float() if upcast else logits
        return _gather_minus_lse(rows, ids)
    return torch.stack(
        [_gather_minus_lse(row.float() if upcast else row, row_ids) for row, row_ids in zip(logits, ids)]
    )


def _gather_minus_lse(logits: Tensor, ids: Tensor) -> Tensor:
    picked = logits.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


# ------------------------------------------------------------------------ divergences


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise terms of KL(P‖Q): e^{log p}·(log p − log q) (not yet summed)."""
    return log_p.exp() * (log_p - log_q)


def divergence(student_log_probs: Tensor, teacher_log_probs: Tensor, alpha: float) -> Tensor:
    """Generalised Jensen–Shannon divergence between student S and teacher T, summed over the last axis.

        α = 0:      KL(T‖S) = Σ e^τ (τ − s)                      (forward KL)
        α = 1:      KL(S‖T) = Σ e^s (s − τ)                      (reverse KL)
        otherwise:  log M = logsumexp(s + log(1−α), τ + log α)
                    D = (1−α)·KL(S‖M) + α·KL(T‖M)                (α = 0.5: JSD)

    The ends are special-cased on purpose: the mixture family tends to 0 at both ends,
    so D is discontinuous at α ∈ {0, 1}, exactly as in the reference.
    """
    alpha = float(alpha)
    raise_first_failure(distillation_checks(full_logit_distillation=True, alpha=alpha, topk=None))
    s, tau = student_log_probs, teacher_log_probs
    if alpha == 0.0:
        return _kl(tau, s).sum(-1)
    if alpha == 1.0:
        return _kl(s, tau).sum(-1)
    log_mixture = torch.logaddexp(s + math.log1p(-alpha), tau + math.log(alpha))
    return ((1.0 - alpha) * _kl(s, log_mixture) + alpha * _kl(tau, log_mixture)).sum(-1)


def _append_tail(log_probs: Tensor) -> Tensor:
    """[a_1..a_K] -> [a_1..a_K, log(1 − Σ e^{a_k})]: the remaining mass as one extra bucket.

    tail = log(−expm1(min(logsumexp_k a_k, −1e−7))); the clamp keeps it finite when the
    top-k already hold (numerically) all the mass.
    """
    log_mass = torch.logsumexp(log_probs, dim=-1, keepdim=True).clamp(max=_TAIL_MAX_LOG_MASS)
    return torch.cat([log_probs, torch.log(-torch.expm1(log_mass))], dim=-1)


def _renormalise(log_probs: Tensor) -> Tensor:
    """a_k − logsumexp_k a_k: the distribution restricted to the K entries."""
    return log_probs - torch.logsumexp(log_probs, dim=-1, keepdim=True)


# ------------------------------------------------------------- self-distillation loss


class SelfDistillationTerms(NamedTuple):
    """Per-token distillation loss and the student's log-prob of each sampled token.

    The second is what importance-sampling clipping needs; returning it saves the
    trainer a second pass over the [B, T, V] student logits.
    """

    per_token_loss: Tensor
    student_token_log_probs: Tensor


def self_distillation_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    completion_ids: Tensor,
    *,
    full_logit_distillation: bool,
    alpha: float = 1.0,
    topk: int | None = None,
    add_tail: bool = False,
    temperature: float = 1.0,
) -> SelfDistillationTerms:
    """`self_distillation_per_token_loss` plus s_y (student log-prob of each sampled token).

    See `self_distillation_per_token_loss` for the formulas; s_y = z_S[y] − logsumexp(z_S)
    on temperature-scaled logits.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape"
        )
    raise_first_failure(
        [
            positive_check("temperature", temperature),
            *distillation_checks(full_logit_distillation=full_logit_distillation, alpha=alpha, topk=topk),
        ]
    )
    if temperature != 1.0:
        # Skipped at 1.0 on purpose: dividing would copy two [B, T, V] tensors for nothing.
        student_logits = student_logits / temperature
        teacher_logits = teacher_logits / temperature

    if topk is not None:
        return _topk_terms(student_logits, teacher_logits, completion_ids, alpha, topk, add_tail)
    if full_logit_distillation:
        s = torch.log_softmax(student_logits, dim=-1)
        tau = torch.log_softmax(teacher_logits, dim=-1)
        s_y = s.gather(-1, completion_ids.long().unsqueeze(-1)).squeeze(-1)
        return SelfDistillationTerms(divergence(s, tau, alpha), s_y)
    s_y = selective_log_softmax(student_logits, completion_ids)
    tau_y = selective_log_softmax(teacher_logits, completion_ids)
    return SelfDistillationTerms((s_y - tau_y).detach() * s_y, s_y)


def _topk_terms(
    z_s: Tensor, z_t: Tensor, ids: Tensor, alpha: float, topk: int, add_tail: bool
) -> SelfDistillationTerms:
    # Larger K than the vocabulary means "everything"; the reference would raise instead.
    k = min(int(topk), z_s.shape[-1])
    lse_s = torch.logsumexp(z_s, dim=-1, keepdim=True)
    top_values, top_indices = torch.topk(z_s, k=k, dim=-1)
    s_y = (z_s.gather(-1, ids.long().unsqueeze(-1)) - lse_s).squeeze(-1)
    if not add_tail:
        per_token = topk_renormalised_divergence(top_values, z_t.gather(-1, top_indices), alpha)
        return SelfDistillationTerms(per_token, s_y)
    a = _append_tail(top_values - lse_s)
    b = _append_tail(z_t.gather(-1, top_indices) - torch.logsumexp(z_t, dim=-1, keepdim=True))
    return SelfDistillationTerms(divergence(a, b, alpha), s_y)


def topk_renormalised_divergence(
    student_topk_logits: Tensor, teacher_topk_logits: Tensor, alpha: float
) -> Tensor:
    """The top-k loss without the tail bucket, from the K logits on the student's support:

        ℓ = divergence(z_S[I] − logsumexp_k z_S[I_k],  z_T[I] − logsumexp_k z_T[I_k],  α)

    This is a_k = z_S[I_k] − logsumexp(z_S) renormalised over the K entries (likewise b):
    the full-vocabulary logsumexps cancel, so nothing outside I enters the value or the
    gradient.
    """
    return divergence(_renormalise(student_topk_logits), _renormalise(teacher_topk_logits), alpha)


def self_distillation_per_token_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    completion_ids: Tensor,
    *,
    full_logit_distillation: bool,
    alpha: float = 1.0,
    topk: int | None = None,
    add_tail: bool = False,
    temperature: float = 1.0,
) -> Tensor:
    """Per-token SDPO loss ℓ[B, T] before IS clipping, masking and aggregation.

    Raw logits [B, T, V] in; both are first divided by `temperature`.

    top-k (`topk` set; needs `full_logit_distillation`), support I = topk(z_S, K):
        a_k = z_S[I_k] − logsumexp(z_S),  b_k = z_T[I_k] − logsumexp(z_T)
        add_tail:  a ← [a, log(1 − Σ e^a)], b ← [b, log(1 − Σ e^b)]
        else:      a ← a − logsumexp(a),   b ← b − logsumexp(b)
        ℓ = divergence(a, b, α)
      (gradient flows through the values and logsumexps, not through the index choice)
    full logit:
        ℓ = divergence(s, τ, α) over the vocabulary
    token level (default; α must be 1):
        ℓ_t = sg(s_y − τ_y) · s_y
      Its value is not a KL (it can be negative); its gradient sg(s_y − τ_y)·∇s_y is the
      score-function estimate of ∇KL(student‖teacher) at the sampled token.
    """
    return self_distillation_terms(
        student_logits,
        teacher_logits,
        completion_ids,
        full_logit_distillation=full_logit_distillation,
        alpha=alpha,
        topk=topk,
        add_tail=add_tail,
        temperature=temperature,
    ).per_token_loss


def importance_sampling_clip(
    per_token_loss: Tensor,
    student_token_log_probs: Tensor,
    old_token_log_probs: Tensor | None,
    clip: float | None,
) -> Tensor:
    """Truncated importance weight on the distillation loss.

        ρ_t = sg(min(exp(clamp(s_y − old_y, −20, 20)), clip)),   returns ρ_t · ℓ_t

    No lower cap. Returns ℓ unchanged when there are no old log-probs (on-policy step)
    or `clip` is None (clipping disabled).
    """
    if old_token_log_probs is None or clip is None:
        return per_token_loss
    raise_first_failure([positive_check("distillation_is_clip", clip)])
    log_ratio = (student_token_log_probs - old_token_log_probs).detach()
    ratio = log_ratio.clamp(-_IS_LOG_RATIO_BOUND, _IS_LOG_RATIO_BOUND).exp().clamp(max=clip)
    return per_token_loss * ratio


# ------------------------------------------------------------------------ aggregation


def token_mean(per_token_loss: Tensor, mask: Tensor) -> Tensor:
    """Σ m·ℓ / max(1, Σ m): the logged `distillation_loss` metric, whatever the loss_type."""
    mask = mask.to(per_token_loss.dtype)
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def aggregate(
    per_token_loss: Tensor,
    mask: Tensor,
    loss_type: str,
    max_completion_length: int | None = None,
) -> Tensor:
    """Reduce ℓ[B, T] under mask m[B, T] to a scalar.

    grpo:         (1/B) Σ_i [ Σ_t m_it ℓ_it / max(1, Σ_t m_it) ]
    bnpo, dapo:   Σ m ℓ / max(1, Σ m)          (over the micro-batch)
    dr_grpo:      Σ m ℓ / (B · max_completion_length)
    """
    raise_first_failure([choice_check("loss_type", loss_type, LOSS_TYPES)])
    mask = mask.to(per_token_loss.dtype)
    if per_token_loss.dim() == 1:
        per_token_loss, mask = per_token_loss.unsqueeze(0), mask.unsqueeze(0)
    masked = per_token_loss * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"):
        return masked.sum() / mask.sum().clamp(min=1.0)
    # dr_grpo
    if max_completion_length is None or max_completion_length <= 0:
        raise ValueError("loss_type='dr_grpo' needs a positive max_completion_length")
    return masked.sum() / (per_token_loss.shape[0] * max_completion_length)


def combine_losses(
    mode: str,
    policy_loss: Tensor | None,
    distillation_loss: Tensor,
    weight: float,
    grad_accum_steps: int,
) -> Tensor:
    """The loss that is back-propagated, w = distillation_weight, GA = grad_accum_steps.

        distillation_only:  L = w · L_d / GA
        hybrid:             L = (L_pg + w · L_d) / GA      (additive; w may exceed 1)
        convex:             L = ((1 − w) · L_pg + w · L_d) / GA   (TRL 1.16; w in [0, 1], no L_pg at w = 1)

    GA is the trainer's gradient-accumulation steps while training, 1 otherwise.
    """
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")
    raise_first_failure([choice_check("sdpo_policy_loss_mode", mode, POLICY_LOSS_MODES)])
    if mode == "distillation_only":
        return weight * distillation_loss / grad_accum_steps
    if mode == "convex":
        if weight == 1.0:
            return distillation_loss / grad_accum_steps
        if policy_loss is None:
            raise ValueError(
                "sdpo_policy_loss_mode='convex' with distillation_weight < 1 needs a policy loss"
            )
        return ((1.0 - weight) * policy_loss + weight * distillation_loss) / grad_accum_steps
    if policy_loss is None:  # hybrid
        raise ValueError("sdpo_policy_loss_mode='hybrid' needs a policy loss")
    return (policy_loss + weight * distillation_loss) / grad_accum_steps


# ------------------------------------------------------------------ GRPO-family pieces


def policy_loss(
    per_token_logps: Tensor,
    old_per_token_logps: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    epsilon: float,
    epsilon_high: float | None,
    importance_sampling_level: str,
    loss_type: str,
    max_completion_length: int | None,
    beta: float = 0.0,
    ref_per_token_logps: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate policy-gradient loss (GRPO/DAPO/Dr.GRPO/GSPO family).

        r_t = log π_θ(y_t) − log π_old(y_t)   (old := sg(log π_θ) when absent: ratio 1, live gradient)
        "sequence" level:  r_t := Σ_t m_t r_t / max(1, Σ_t m_t)   for every t of the row
        ℓ_t = −min(e^{r_t}·A, clip(e^{r_t}, 1 − ε, 1 + ε_high)·A)          (ε_high defaults to ε)
        beta > 0:  ℓ_t += β · (e^{ref − logp} − (ref − logp) − 1)        (k3 estimate of KL to ref)
        L = aggregate(ℓ, m, loss_type, max_completion_length)

    Returns (per_token_loss[B, T], L).
    """
    raise_first_failure([choice_check("importance_sampling_level", importance_sampling_level, IS_LEVELS)])
    eps_low = epsilon
    eps_high = epsilon if epsilon_high is None else epsilon_high
    if old_per_token_logps is None:
        old_per_token_logps = per_token_logps.detach()
    log_ratio = per_token_logps - old_per_token_logps
    if importance_sampling_level == "sequence":
        m = mask.to(log_ratio.dtype)
        seq = (log_ratio * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
        log_ratio = seq.expand_as(per_token_logps)
    adv = advantages.reshape(-1, 1).to(per_token_logps.dtype)
    ratio = log_ratio.exp()
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    per_token_loss = -torch.minimum(unclipped, clipped)
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError("beta != 0 needs ref_per_token_logps")
        delta = ref_per_token_logps - per_token_logps
        per_token_loss = per_token_loss + beta * (delta.exp() - delta - 1.0)
    return per_token_loss, aggregate(per_token_loss, mask, loss_type, max_completion_length)


def rows_with_policy_gradient(advantages: Tensor, valid: Tensor, beta: float) -> Tensor | None:
    """Rows whose policy loss can be non-zero: valid, with a non-zero advantage (a group whose
    rewards are all equal has A = 0 exactly). None (all rows) when a KL term to the reference
    model (β ≠ 0) makes every row count."""
    if beta != 0.0:
        return None
    return ((advantages != 0) & valid.bool()).nonzero().squeeze(1)


def policy_loss_on_rows(
    logits: Tensor,
    completion_ids: Tensor,
    advantages: Tensor,
    mask: Tensor,
    old_per_token_logps: Tensor | None,
    *,
    rows: Tensor | None = None,
    ref_per_token_logps: Tensor | None = None,
    epsilon: float,
    epsilon_high: float | None,
    importance_sampling_level: str,
    loss_type: str,
    max_completion_length: int | None,
    beta: float = 0.0,
) -> Tensor:
    """``policy_loss`` of a micro-batch whose ``logits`` cover only ``rows`` (all when None).

        ℓ_i,t = policy_loss's ℓ on the computed rows, 0 on the others;  L = aggregate(ℓ, m)

    The skipped rows' tokens still count in the aggregation's denominators, so skipping rows
    whose loss is exactly zero (``rows_with_policy_gradient``) leaves L and its gradient as
    they are. ``ref_per_token_logps`` covers the computed rows too.
    """

    def pick(t: Tensor) -> Tensor:
        return t if rows is None else t[rows]

    per_token, _ = policy_loss(
        selective_log_softmax(logits, pick(completion_ids)),
        None if old_per_token_logps is None else pick(old_per_token_logps),
        pick(advantages),
        pick(mask),
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        importance_sampling_level=importance_sampling_level,
        loss_type=loss_type,
        max_completion_length=max_completion_length,
        beta=beta,
        ref_per_token_logps=ref_per_token_logps,
    )
    if rows is not None:
        full = torch.zeros(mask.shape, dtype=per_token.dtype, device=per_token.device)
        per_token = full.index_put((rows,), per_token)
    return aggregate(per_token, mask, loss_type, max_completion_length)
