"""TRL 1.5 and TRL 1.16 on one SDPOConfig: the README's compatibility table against the installed
``trl`` package, the resolution of renamed fields, and TRL 1.16's trainer surface (its batch keys,
callback payloads and warning sentences), checked against TRL's own code where it runs here."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import logging
import re
import textwrap
from pathlib import Path

import pytest
import torch
import trl
from transformers import TrainingArguments
from trl.experimental.sdpo import SDPOConfig as TRLConfig
from trl.experimental.sdpo import SDPOTrainer as TRLTrainer

from sdpo_agent import SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model
from tests.trainer_kit import FAST, chat_dataset, length_reward

README = Path(__file__).resolve().parent.parent / "README.md"
ABSENT = object()
# Resolved in __post_init__ by TRL and by us alike: the table gives the declared default.
RESOLVED_LATER = {"bf16", "epsilon_high", "generation_batch_size", "steps_per_generation"}
# The one field TRL 1.16 has whose value ours keeps at the seed's under trl_defaults="1.16".
KEPT_AT_THE_SEEDS = {"trackio_space_id"}


def _literal(cell: str) -> object:
    cell = cell.strip()
    if cell.startswith("—"):
        return ABSENT
    match = re.match(r"`([^`]*)`", cell)
    assert match, f"cell {cell!r} starts with neither a `default` nor —"
    return ast.literal_eval(match.group(1))


def compatibility_table() -> dict[str, tuple[object, object, object, object]]:
    """field -> (TRL 1.5 default, TRL 1.16 default, ours, ours with trl_defaults="1.16")."""
    text = README.read_text()
    section = text[text.index("### TRL 1.5 and TRL 1.16 on one config") :]
    section = section[: section.index("\n## ")]
    header = "| field | TRL 1.5 | TRL 1.16 | here |"
    rows = {}
    for line in section[section.index(header) :].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        name = cells[0].strip("`")
        ours = _literal(cells[3])
        switched = re.search(r'with `trl_defaults="1\.16"`: `([^`]*)`', cells[3])
        ours_116 = ast.literal_eval(switched.group(1)) if switched else ours
        assert name not in rows, f"{name} listed twice"
        rows[name] = (_literal(cells[1]), _literal(cells[2]), ours, ours_116)
    return rows


def declared(config_class: type, name: str) -> object:
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def differs_from_training_arguments(config_class: type) -> set[str]:
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {
        f.name
        for f in dataclasses.fields(config_class)
        if f.name not in base or declared(config_class, f.name) != declared(TrainingArguments, f.name)
    }


def test_the_table_is_about_the_installed_trl_1_16():
    assert trl.__version__ == "1.16.0", "the README's table describes TRL 1.16.0 (the dev extra pins it)"


def test_the_table_lists_every_field_that_trl_1_16_or_ours_adds_or_overrides():
    table = compatibility_table()
    expected = differs_from_training_arguments(TRLConfig) | differs_from_training_arguments(SDPOConfig)
    assert set(table) == expected, (sorted(expected - set(table)), sorted(set(table) - expected))


def test_the_trl_1_16_column_is_the_installed_trls_fields_and_defaults():
    trl_fields = {f.name for f in dataclasses.fields(TRLConfig)}
    for name, (_, trl_116, _, _) in compatibility_table().items():
        if trl_116 is ABSENT:
            assert name not in trl_fields, f"{name} is a field of TRL 1.16's SDPOConfig"
        else:
            assert name in trl_fields, f"{name} is no field of TRL 1.16's SDPOConfig"
            assert declared(TRLConfig, name) == trl_116, name


@pytest.mark.parametrize("generation", ["1.5", "1.16"])
def test_the_here_column_is_what_our_config_holds(tmp_path, generation):
    config = SDPOConfig(output_dir=str(tmp_path), trl_defaults=generation)
    for name, (_, _, ours, ours_116) in compatibility_table().items():
        expected = ours_116 if generation == "1.16" else ours
        value = declared(SDPOConfig, name) if name in RESOLVED_LATER else getattr(config, name)
        assert value == expected, (name, generation, value)


def test_the_seeds_defaults_are_kept_and_trl_1_16s_fields_take_trl_1_16s():
    for name, (trl_15, trl_116, ours, ours_116) in compatibility_table().items():
        if trl_15 is not ABSENT:
            assert ours == trl_15, f"{name}: the seed's default is {trl_15!r}"
        elif trl_116 is not ABSENT:
            assert ours == trl_116, f"{name}: a field only TRL 1.16 has takes its default"
        if trl_116 is not ABSENT and name not in KEPT_AT_THE_SEEDS:
            assert ours_116 == trl_116, f"{name}: trl_defaults='1.16' gives TRL 1.16's {trl_116!r}"


def test_with_trl_defaults_1_16_every_trl_field_holds_trls_value_after_construction(tmp_path):
    theirs = TRLConfig(output_dir=str(tmp_path), bf16=False)  # TRL's bf16=None needs a bf16 device
    ours = SDPOConfig(output_dir=str(tmp_path), trl_defaults="1.16")
    different = {
        f.name: (getattr(theirs, f.name), getattr(ours, f.name))
        for f in dataclasses.fields(TRLConfig)
        if getattr(theirs, f.name) != getattr(ours, f.name)
    }
    # Without an accelerator pinned memory serves nothing: ours turns it off (TRL keeps True,
    # and torch warns on every run).
    machine = {} if torch.accelerator.is_available() else {"dataloader_pin_memory": (True, False)}
    assert set(different) == KEPT_AT_THE_SEEDS | set(machine), different
    assert {name: different[name] for name in machine} == machine


# ---------------------------------------------------------------------- renamed fields, resolved


@pytest.mark.parametrize(
    ("kwargs", "resolved"),
    [
        ({}, {"distillation_mode": "sampled_token", "full_logit_distillation": False}),
        ({"full_logit_distillation": True}, {"distillation_mode": "full_logits"}),
        ({"full_logit_distillation": True, "distillation_topk": 5}, {"distillation_mode": "topk_logits"}),
        ({"distillation_mode": "full_logits"}, {"full_logit_distillation": True}),
        ({"distillation_mode": "topk_logits", "distillation_topk": 5}, {"full_logit_distillation": True}),
        ({"distillation_mode": "sampled_token"}, {"full_logit_distillation": False}),
        ({}, {"teacher_model_kind": "ema", "teacher_regularization": "ema"}),
        ({"teacher_regularization": "none"}, {"teacher_model_kind": "live"}),
        ({"teacher_model_kind": "live"}, {"teacher_regularization": "none"}),
        ({"teacher_model_kind": "base"}, {"teacher_regularization": "base"}),
        ({"teacher_regularization": "trust_region"}, {"teacher_model_kind": "trust_region"}),
        ({"teacher_model_kind": "live", "teacher_regularization": "none"}, {"teacher_model_kind": "live"}),
        ({"ema_update_rate": 0.2}, {"teacher_update_rate": None, "resolved_teacher_update_rate": 0.2}),
        ({"trl_defaults": "1.16", "ema_update_rate": 0.2}, {"teacher_update_rate": 0.2}),
        ({"trl_defaults": "1.16"}, {"disable_dropout": True, "sdpo_policy_loss_mode": "convex"}),
        ({"trl_defaults": "1.16", "disable_dropout": False}, {"disable_dropout": False}),
    ],
)
def test_each_spelling_fills_in_the_other(tmp_path, kwargs, resolved):
    config = SDPOConfig(output_dir=str(tmp_path), **kwargs)
    assert {name: getattr(config, name) for name in resolved} == resolved


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"distillation_mode": "sampled_token", "full_logit_distillation": True}, ["distillation_mode", "full_logit_distillation"]),
        ({"distillation_mode": "full_logits", "full_logit_distillation": False}, ["distillation_mode", "full_logit_distillation"]),
        ({"distillation_mode": "full_logits", "distillation_topk": 5}, ["distillation_mode", "distillation_topk"]),
        ({"distillation_mode": "sampled_token", "distillation_topk": 5}, ["distillation_mode", "distillation_topk"]),
        ({"distillation_mode": "topk_logits"}, ["distillation_mode", "distillation_topk"]),
        ({"distillation_mode": "logits"}, ["distillation_mode"]),
        ({"teacher_model_kind": "live", "teacher_regularization": "ema"}, ["teacher_model_kind", "teacher_regularization"]),
        ({"teacher_model_kind": "base", "teacher_regularization": "none"}, ["teacher_model_kind", "teacher_regularization"]),
        ({"teacher_model_kind": "frozen"}, ["teacher_model_kind"]),
        ({"teacher_sync_steps": 0}, ["teacher_sync_steps"]),
        ({"trl_defaults": "2.0"}, ["trl_defaults"]),
        ({"distillation_mode": "full_logits", "distillation_weight": 0.5}, ["distillation_weight", "trl_defaults", "sdpo_policy_loss_mode"]),
        ({"sdpo_policy_loss_mode": "convex", "distillation_weight": 1.5}, ["convex", "distillation_weight"]),
    ],
)  # fmt: skip
def test_contradicting_settings_raise_naming_both_fields(tmp_path, kwargs, names):
    with pytest.raises(ValueError) as info:
        SDPOConfig(output_dir=str(tmp_path), **kwargs)
    for name in names:
        assert name in str(info.value)


def test_a_blend_written_for_trl_1_16_is_accepted_once_its_meaning_is_named(tmp_path):
    for extra in ({"trl_defaults": "1.16"}, {"sdpo_policy_loss_mode": "convex"}):
        config = SDPOConfig(
            output_dir=str(tmp_path), distillation_mode="full_logits", distillation_weight=0.5, **extra
        )
        assert config.sdpo_policy_loss_mode == "convex"
    seed = SDPOConfig(
        output_dir=str(tmp_path),
        distillation_mode="full_logits",
        distillation_weight=0.5,
        sdpo_policy_loss_mode="distillation_only",
    )
    assert seed.distillation_weight == 0.5  # the seed's scaled distillation loss, as asked


# ----------------------------------------------------------------- TRL 1.16's trainer surface


def _dispatched_payloads(method) -> dict[str, set[str]]:
    """event -> keyword names, from the ``_dispatch_self_distillation_callback`` calls in ``method``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    out = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "_dispatch_self_distillation_callback"
        ):
            out[node.args[0].value] = {k.arg for k in node.keywords}
    return out


def test_callbacks_receive_trls_keyword_arguments(tmp_path):
    expected = {
        **_dispatched_payloads(TRLTrainer._prepare_training_batch),
        **_dispatched_payloads(TRLTrainer.sample_rollouts),
    }
    assert set(expected) == {
        "on_teacher_context_built",
        "on_self_distillation_batch_prepared",
        "on_generation_prompts_selected",
    }
    seen: dict[str, set[str]] = {}

    class Recorder:
        def on_teacher_context_built(self, **kwargs):
            seen["on_teacher_context_built"] = set(kwargs)

        def on_self_distillation_batch_prepared(self, **kwargs):
            seen["on_self_distillation_batch_prepared"] = set(kwargs)

        def on_generation_prompts_selected(self, **kwargs):
            seen["on_generation_prompts_selected"] = set(kwargs)
            assert len(kwargs["generation_prompts"]) == 4

        def __getattr__(self, name):  # the standard TrainerCallback events
            return lambda *a, **k: None

    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=1, include_environment_feedback=True, **FAST)
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
        callbacks=[Recorder()],
    )
    trainer.train()
    standard = {"args", "state", "control", "model", "processing_class"}
    for event, names in expected.items():
        assert seen[event] == standard | names, event


def _trl_warning_sentences() -> list[str]:
    """The first sentence of each degenerate-batch warning in TRL's trainer source."""
    source = inspect.getsource(TRLTrainer._record_reward_diagnostics) + inspect.getsource(
        TRLTrainer._warn_on_inactive_self_distillation
    )
    return re.findall(r'"([A-Z][^"]*?\.) "\n', source)


@pytest.mark.parametrize(
    ("reward", "feedback", "sentences"),
    [
        (1.0, False, ["Observed flat SDPO rewards across all sampled generations."]),
        (
            0.0,
            False,
            [
                "Observed flat SDPO rewards across all sampled generations.",
                "SDPO self-distillation is inactive because no reprompted samples were constructed.",
                "SDPO did not find any successful rollouts in the current generation groups.",
            ],
        ),
    ],
)
def test_degenerate_batches_warn_with_trls_sentences(tmp_path, caplog, reward, feedback, sentences):
    assert set(sentences) <= set(_trl_warning_sentences())
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), max_steps=1, include_environment_feedback=feedback, **FAST)
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [reward] * len(completions),
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
    )
    with caplog.at_level(logging.WARNING, logger="sdpo_agent"):
        trainer.train()
    messages = [r.getMessage() for r in caplog.records if r.name == "sdpo_agent"]
    for sentence in sentences:
        assert any(m.startswith(sentence) for m in messages), (sentence, messages)
    assert all(m.endswith("Consecutive degenerate steps: 1.") for m in messages)
    if reward == 1.0:
        assert not any("inactive" in m for m in messages)  # successes are demonstrations


def trl_batch(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch in TRL's keys: full, shorter and empty completions, one row without a teacher
    signal. No left padding: TRL's forward passes no position ids, ours the padding-aware ones."""
    g = torch.Generator().manual_seed(seed)
    rows, prompt, teacher_prompt, length = 4, 5, 9, 6
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1, 4:], mask[2, 1:], mask[3, :] = 0, 0, 0
    completion = torch.randint(3, vocab_size, (rows, length), generator=g) * mask
    return {
        "prompt_ids": torch.randint(3, vocab_size, (rows, prompt), generator=g),
        "prompt_mask": torch.ones(rows, prompt, dtype=torch.long),
        "completion_ids": completion,
        "completion_mask": mask,
        "teacher_input_ids": torch.cat(
            [torch.randint(3, vocab_size, (rows, teacher_prompt), generator=g), completion], 1
        ),
        "teacher_attention_mask": torch.cat([torch.ones(rows, teacher_prompt, dtype=torch.long), mask], 1),
        "self_distillation_mask": torch.tensor([1.0, 1.0, 0.0, 1.0]),
        "advantages": torch.tensor([0.5, -1.0, 0.3, 0.2]),
        "old_per_token_logps": -torch.rand(rows, length, generator=g),
    }


@pytest.mark.parametrize(
    ("settings", "loss_type"),
    [
        ({"distillation_mode": "sampled_token"}, "dapo"),
        ({"distillation_mode": "full_logits", "distillation_alpha": 0.5}, "dapo"),
        ({"distillation_mode": "topk_logits", "distillation_topk": 5, "distillation_alpha": 0.5}, "grpo"),
        (
            {"distillation_mode": "topk_logits", "distillation_topk": 5, "distillation_add_tail": True},
            "dr_grpo",
        ),
    ],
)
@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_compute_loss_on_trls_batch_is_trls_own_loss(tmp_path, settings, loss_type, weight):
    """TRL 1.16's trainer and ours, the same model and batch: the same loss (trl_defaults="1.16")."""
    model, tokenizer = build_tiny_model()
    shared = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 6,
        "report_to": "none",
        "bf16": False,
        "teacher_model_kind": "live",
        "distillation_weight": weight,
        "loss_type": loss_type,
        **settings,
    }
    trainers = [
        cls(
            model=model,
            reward_funcs=length_reward,
            args=args,
            train_dataset=chat_dataset(),
            processing_class=tokenizer,
        )
        for cls, args in (
            (TRLTrainer, TRLConfig(use_cpu=True, **shared)),
            (SDPOTrainer, SDPOConfig(trl_defaults="1.16", **shared)),
        )
    ]
    batch = trl_batch(model.config.vocab_size)
    model.train()
    losses = []
    for trainer in trainers:
        trainer.current_gradient_accumulation_steps = 1
        losses.append(trainer.compute_loss(model, dict(batch)))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-9)
    losses[1].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_compute_loss_on_trls_batch_needs_only_trls_required_keys(tmp_path):
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(output_dir=str(tmp_path), **FAST)
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=args,
        train_dataset=chat_dataset(),
        processing_class=tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 1
    batch = trl_batch(model.config.vocab_size)
    for optional in ("self_distillation_mask", "advantages", "old_per_token_logps"):
        batch.pop(optional)
    loss = trainer.compute_loss(model, batch)
    assert torch.isfinite(loss) and loss.requires_grad
    batch.pop("teacher_input_ids")
    with pytest.raises(ValueError, match="teacher_input_ids"):
        trainer.compute_loss(model, batch)


def remote_code_checkpoint(path: Path) -> Path:
    """The tiny model saved under a model type transformers does not know, with its own code."""
    model, tokenizer = build_tiny_model()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n"
        "    model_type = 'sdpo_custom_llama'\n"
    )
    (path / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomLlama(LlamaForCausalLM):\n    config_class = CustomConfig\n    custom_code_ran = True\n"
    )
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "sdpo_custom_llama"
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomLlama",
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_trust_remote_code_reaches_model_loading(tmp_path):
    checkpoint = remote_code_checkpoint(tmp_path / "custom")

    def trainer(**settings):
        args = SDPOConfig(output_dir=str(tmp_path / "out"), **FAST, **settings)
        return SDPOTrainer(
            model=str(checkpoint), reward_funcs=length_reward, args=args, train_dataset=chat_dataset()
        )

    with pytest.raises(ValueError, match="custom code"):
        trainer()
    assert type(trainer(trust_remote_code=True).model).__name__ == "CustomLlama"
    with pytest.raises(ValueError, match="custom code"):  # model_init_kwargs has the last word, as in TRL
        trainer(trust_remote_code=True, model_init_kwargs={"trust_remote_code": False})
