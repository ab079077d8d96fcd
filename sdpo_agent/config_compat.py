"""Two generations of TRL's SDPO API on one ``SDPOConfig``: the seed's (TRL <= 1.5) and TRL 1.16's.

TRL 1.16 renamed or re-specified a few fields. Each pair below is one setting with two spellings;
``resolve_generations`` fills the unset spelling from the set one (so code of either generation
reads the field it knows), and raises ``ValueError`` naming both fields when they disagree.

=========================================  ===========================================
TRL 1.16                                   TRL 1.5 (the seed)
=========================================  ===========================================
``distillation_mode="sampled_token"``      ``full_logit_distillation=False``
``distillation_mode="full_logits"``        ``full_logit_distillation=True``
``distillation_mode="topk_logits"`` + k    ``full_logit_distillation=True`` + ``distillation_topk=k``
``teacher_model_kind="ema"``               ``teacher_regularization="ema"``
``teacher_model_kind="live"``              ``teacher_regularization="none"``
``teacher_model_kind="base"``              ``teacher_regularization="base"`` (ours; the seed's nearest is ``ema`` at rate 0)
``teacher_model_kind="trust_region"`` (ours)  ``teacher_regularization="trust_region"``
``distillation_weight`` (convex blend)     ``sdpo_policy_loss_mode="convex"`` (ours)
=========================================  ===========================================

Where the generations' defaults differ, ``trl_defaults`` picks whose apply ("1.5", the default,
keeps the seed's; "1.16" takes TRL 1.16's): ``GENERATION_DEFAULTS``.
"""

from __future__ import annotations

from typing import Any

TRL_DEFAULTS = ("1.5", "1.16")
DISTILLATION_MODES = ("sampled_token", "full_logits", "topk_logits")
# teacher_model_kind (TRL 1.16's three, plus the seed's trust_region) -> teacher_regularization.
TEACHER_KIND_TO_REGULARIZATION = {
    "ema": "ema",
    "live": "none",
    "base": "base",
    "trust_region": "trust_region",
}
TEACHER_REGULARIZATION_TO_KIND = {v: k for k, v in TEACHER_KIND_TO_REGULARIZATION.items()}
# field -> its default per generation (fields whose default is None until resolved here).
GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "disable_dropout": {"1.5": False, "1.16": True},
    "sdpo_policy_loss_mode": {"1.5": "distillation_only", "1.16": "convex"},
}
# Fields only TRL 1.16 has: setting one marks a config as written against TRL 1.16.
TRL_116_ONLY = ("distillation_mode", "teacher_model_kind")


def _raise_if(condition: bool, message: str) -> None:
    if condition:
        raise ValueError(message)


def resolve_generations(config: Any) -> None:
    """Fill both spellings of every renamed setting and the generation-dependent defaults, in place.

    Runs before the config's own validation, which then sees the seed's fields as before.
    """
    _raise_if(
        config.trl_defaults not in TRL_DEFAULTS,
        f"trl_defaults must be one of {TRL_DEFAULTS}, got {config.trl_defaults!r}",
    )
    _check_distillation_weight_meaning(config)
    for name, per_generation in GENERATION_DEFAULTS.items():
        if getattr(config, name) is None:
            setattr(config, name, per_generation[config.trl_defaults])
    if config.trl_defaults == "1.16" and config.teacher_update_rate is None:
        config.teacher_update_rate = config.ema_update_rate  # TRL 1.16 holds the rate itself (0.05)
    _resolve_distillation_mode(config)
    _resolve_teacher_kind(config)
    _raise_if(
        config.teacher_sync_steps < 1, f"teacher_sync_steps must be >= 1, got {config.teacher_sync_steps}"
    )


def _check_distillation_weight_meaning(config: Any) -> None:
    """``distillation_weight`` < 1 means a convex blend in TRL 1.16 and a scaled distillation loss
    in the seed: a config written against TRL 1.16 must say which, rather than get the other."""
    written_for_116 = any(getattr(config, name) is not None for name in TRL_116_ONLY)
    ambiguous = (
        written_for_116
        and config.trl_defaults == "1.5"
        and config.sdpo_policy_loss_mode is None
        and config.distillation_weight != 1.0
    )
    _raise_if(
        ambiguous,
        f"distillation_weight={config.distillation_weight} with TRL 1.16's fields ("
        + ", ".join(f"{n}={getattr(config, n)!r}" for n in TRL_116_ONLY if getattr(config, n) is not None)
        + ") is ambiguous: TRL 1.16 blends (1 - w)·policy + w·distillation, the seed scales the "
        "distillation loss alone. Set trl_defaults='1.16' (or sdpo_policy_loss_mode='convex') for "
        "TRL 1.16's meaning, sdpo_policy_loss_mode='distillation_only' for the seed's",
    )


def _resolve_distillation_mode(config: Any) -> None:
    mode, full, topk = config.distillation_mode, config.full_logit_distillation, config.distillation_topk
    if mode is None:
        full = bool(full)
        # The seed's topk-without-full_logit_distillation error is left to the seed's validation.
        config.full_logit_distillation = full
        config.distillation_mode = (
            ("topk_logits" if topk is not None else "full_logits") if full else "sampled_token"
        )
        return
    _raise_if(
        mode not in DISTILLATION_MODES,
        f"distillation_mode must be one of {DISTILLATION_MODES}, got {mode!r}",
    )
    wants_full = mode != "sampled_token"
    _raise_if(
        full is not None and bool(full) != wants_full,
        f"distillation_mode={mode!r} contradicts full_logit_distillation={full!r} (TRL 1.5's spelling of "
        f"distillation_mode={mode!r} is full_logit_distillation={wants_full}); set one of them",
    )
    _raise_if(
        mode == "topk_logits" and topk is None,
        "distillation_mode='topk_logits' requires distillation_topk to be set",
    )
    _raise_if(
        mode == "full_logits" and topk is not None,
        f"distillation_mode='full_logits' contradicts distillation_topk={topk} (a top-k is "
        "distillation_mode='topk_logits'); leave distillation_topk unset or change the mode",
    )
    _raise_if(
        mode == "sampled_token" and topk is not None,
        f"distillation_mode='sampled_token' contradicts distillation_topk={topk}: distillation_topk "
        "requires distillation_mode='topk_logits' (TRL 1.5: full_logit_distillation=True)",
    )
    config.full_logit_distillation = wants_full


def _resolve_teacher_kind(config: Any) -> None:
    kind, regularization = config.teacher_model_kind, config.teacher_regularization
    _raise_if(
        kind is not None and kind not in TEACHER_KIND_TO_REGULARIZATION,
        f"teacher_model_kind must be one of {tuple(TEACHER_KIND_TO_REGULARIZATION)}, got {kind!r}",
    )
    _raise_if(
        regularization is not None and regularization not in TEACHER_REGULARIZATION_TO_KIND,
        f"teacher_regularization must be one of {tuple(TEACHER_REGULARIZATION_TO_KIND)}, got {regularization!r}",
    )
    if kind is None and regularization is None:
        kind, regularization = "ema", "ema"
    elif kind is None:
        kind = TEACHER_REGULARIZATION_TO_KIND[regularization]
    elif regularization is None:
        regularization = TEACHER_KIND_TO_REGULARIZATION[kind]
    _raise_if(
        TEACHER_KIND_TO_REGULARIZATION[kind] != regularization,
        f"teacher_model_kind={kind!r} contradicts teacher_regularization={regularization!r} "
        f"(teacher_model_kind={kind!r} is teacher_regularization="
        f"{TEACHER_KIND_TO_REGULARIZATION[kind]!r}); set one of them",
    )
    config.teacher_model_kind, config.teacher_regularization = kind, regularization


def check_teacher_server(config: Any) -> None:
    """TRL 1.16's preconditions of ``use_teacher_server=True``, each naming its field (TRL checks
    them when the trainer is built, and so does ours, so code expecting the error there finds it)."""
    if not config.use_teacher_server:
        return
    _raise_if(
        not (config.use_vllm and config.vllm_mode == "server"),
        "`use_teacher_server=True` requires `use_vllm=True` and `vllm_mode='server'`: teacher logprobs are "
        f"served by the same vLLM server used for generation (got use_vllm={config.use_vllm}, "
        f"vllm_mode={config.vllm_mode!r}).",
    )
    _raise_if(
        config.teacher_model_kind != "live",
        "`use_teacher_server=True` only supports `teacher_model_kind='live'` (the generation server holds "
        f"the current student weights), got {config.teacher_model_kind!r}.",
    )
    _raise_if(
        config.distillation_weight != 1.0 or config.sdpo_policy_loss_mode == "hybrid",
        "`use_teacher_server=True` only supports pure self-distillation with `distillation_weight=1.0`, "
        f"got {config.distillation_weight} (sdpo_policy_loss_mode={config.sdpo_policy_loss_mode!r}). "
        "A blend with the policy loss needs the full-vocabulary logits, which the server does not return.",
    )
    _raise_if(
        config.distillation_mode not in ("sampled_token", "topk_logits"),
        "`use_teacher_server=True` only supports `distillation_mode` in {'sampled_token', 'topk_logits'}, "
        f"got {config.distillation_mode!r}. The server returns the teacher's top-k logprobs, not the full "
        "vocabulary, so `full_logits` is unavailable. Note `topk_logits` distills over the teacher's own "
        "top-k support (the server cannot score the student's top-k indices).",
    )
