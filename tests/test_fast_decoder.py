"""The fast decoder path: DecoderView, packed forwards, the static-cache sampler, layer records.

Everything is checked against the model's own forward, backward and generate().
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config, Qwen3Config

from sdpo_agent.decoder import DecoderView, unsupported_reason
from sdpo_agent.fast_generation import StaticCacheGenerator
from sdpo_agent.generation import TransformersGenerator, left_pad, sampling_settings
from sdpo_agent.grpo_trainer import policy_gradient_loss, rows_with_policy_gradient
from sdpo_agent.packed_forward import PackedLayout, distinct_rows, packed_completion_logits
from sdpo_agent.tiny_model import build_tiny_model

SMALL = {
    "vocab_size": 97,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
}


def random_model(config):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).float()


FAMILIES = {
    "llama": lambda: random_model(LlamaConfig(**SMALL, tie_word_embeddings=True)),
    "qwen2": lambda: random_model(Qwen2Config(**SMALL)),  # biased q/k/v
    "qwen3": lambda: random_model(Qwen3Config(**SMALL, head_dim=8)),  # q/k head norms
}


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny_model()
    return model, tokenizer


sampling_args = sampling_settings


def grouped_batch(vocab: int, pad: int, completion_length: int = 7):
    """Three prompts (one left-padded shorter), each repeated; right-padded completions."""
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in (6, 9, 9)]
    prompts[2][-1] = (prompts[1][-1] + 1) % vocab or 3  # same length as prompt 1, other tokens
    rows = [p for p in prompts for _ in range(3)]
    prompt_ids, prompt_mask = left_pad(rows, pad)
    completions = torch.randint(3, vocab, (len(rows), completion_length), generator=generator)
    completions[4, -2:] = pad  # a completion that ended early
    return prompt_ids, prompt_mask, completions


def assert_same_gradients(ours: dict, theirs: dict) -> None:
    """Every parameter's gradient agrees to float32 rounding, relative to its own size."""
    assert ours.keys() == theirs.keys()
    for name, want in theirs.items():
        error = (ours[name] - want).norm() / want.norm().clamp(min=1e-12)
        assert error < 1e-5, f"{name}: relative gradient error {error:.2e}"


def reference_logits(model, prompt_ids, prompt_mask, completions):
    ids = torch.cat([prompt_ids, completions], dim=1)
    mask = torch.cat([prompt_mask, torch.ones_like(completions)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
    return out.logits[:, prompt_ids.shape[1] - 1 : -1]


# ---------------------------------------------------------------------------------- support


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_supported_families_get_a_self_checked_view(family):
    model = FAMILIES[family]()
    view = DecoderView.of(model)
    assert view is not None
    assert view.self_check() is None
    assert DecoderView.of(model) is view  # verified once per model


def test_other_architectures_fall_back_with_a_reason():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert "model_type 'gpt2'" in unsupported_reason(gpt2)
    assert DecoderView.of(gpt2) is None
    windowed = random_model(Qwen2Config(**SMALL, use_sliding_window=True, sliding_window=4))
    assert unsupported_reason(windowed) == "sliding-window attention"
    dynamic = LlamaConfig(**SMALL, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4})
    assert "rescales with the sequence length" in unsupported_reason(random_model(dynamic))


def test_a_view_that_disagrees_with_the_model_is_refused(tiny, monkeypatch):
    model, _ = tiny
    view = DecoderView(model)
    monkeypatch.setattr(view, "scaling", view.scaling * 1.5)
    assert "max |logit difference|" in view.self_check()


# ----------------------------------------------------------------------------- packed forward


def test_distinct_rows_maps_every_row_to_its_first_occurrence():
    ids = torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]])
    first, owner = distinct_rows(ids, torch.ones_like(ids))
    assert first.tolist() == [0, 1, 4]
    assert owner.tolist() == [0, 1, 0, 1, 2]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("share", [True, False])
def test_packed_logits_match_the_models_forward(family, share):
    model = FAMILIES[family]().eval()
    prompt_ids, prompt_mask, completions = grouped_batch(SMALL["vocab_size"], SMALL["pad_token_id"])
    layout = PackedLayout.build(prompt_ids, prompt_mask, completions, share_prefixes=share)
    assert layout.prefix_ids.shape[0] == (3 if share else 9)
    with torch.no_grad():
        got = packed_completion_logits(
            DecoderView.of(model), prompt_ids, prompt_mask, completions, checkpoint=False, layout=layout
        )
        want = reference_logits(model, prompt_ids, prompt_mask, completions)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("checkpoint", [True, False])
def test_packed_gradients_match_the_models_backward(checkpoint):
    model = FAMILIES["qwen3"]().train()
    prompt_ids, prompt_mask, completions = grouped_batch(SMALL["vocab_size"], SMALL["pad_token_id"])
    weights = torch.randn(completions.shape[0], completions.shape[1], SMALL["vocab_size"])

    def gradients(logits_fn):
        model.zero_grad(set_to_none=True)
        (logits_fn().log_softmax(-1) * weights).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    view = DecoderView.of(model)
    ours = gradients(
        lambda: packed_completion_logits(view, prompt_ids, prompt_mask, completions, checkpoint=checkpoint)
    )
    theirs = gradients(lambda: reference_logits(model, prompt_ids, prompt_mask, completions))
    assert_same_gradients(ours, theirs)


# --------------------------------------------------------------------------- static-cache sampler


def chat_prompts(tokenizer, group: int = 4) -> list[list[int]]:
    texts = ["Solve 2+2.", "Name a prime larger than ten.", "Hi"]
    out = []
    for text in texts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        out += [list(ids)] * group
    return out


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"generation_kwargs": {"min_new_tokens": 20}},
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.3},
        {"min_p": 0.05},
    ],
)
def test_static_cache_sampler_draws_the_tokens_generate_draws(tiny, settings):
    model, tokenizer = tiny
    args = sampling_args(**settings, match_generate_sampling=True)
    eos = [tokenizer.eos_token_id]
    prompts = chat_prompts(tokenizer)
    torch.manual_seed(0)
    ours = StaticCacheGenerator(lambda: model, tokenizer, args, eos).generate(prompts, 20)
    torch.manual_seed(0)
    theirs = TransformersGenerator(lambda: model, tokenizer, args, eos).generate(prompts, 20)
    assert ours == theirs
    assert len({tuple(o) for o in ours}) > 3


def test_the_default_draw_is_another_stream_of_the_same_sampler(tiny):
    """Without match_generate_sampling the tokens come from one uniform per row through the
    cumulative sum, not generate()'s multinomial stream; the first token's distribution is the
    policy's either way."""
    model, tokenizer = tiny
    eos = [tokenizer.eos_token_id]
    prompt = chat_prompts(tokenizer, 1)[:1]
    torch.manual_seed(0)
    ours = StaticCacheGenerator(lambda: model, tokenizer, sampling_args(), eos).generate(prompt * 12, 20)
    torch.manual_seed(0)
    theirs = TransformersGenerator(lambda: model, tokenizer, sampling_args(), eos).generate(prompt * 12, 20)
    assert ours != theirs
    n = 4000
    torch.manual_seed(1)
    first = StaticCacheGenerator(lambda: model, tokenizer, sampling_args(), eos).generate(prompt * n, 1)
    counts = torch.bincount(
        torch.tensor([row[0] for row in first]), minlength=model.config.vocab_size
    ).double()
    with torch.no_grad():
        probs = model(input_ids=torch.tensor(prompt)).logits[0, -1].double().softmax(-1)
    expected = probs * n
    sigma = (expected * (1 - probs)).sqrt()
    assert ((counts - expected).abs() <= 5 * sigma + 3).all()


def test_unsupported_generation_settings_go_to_generate(tiny):
    model, tokenizer = tiny
    generator = StaticCacheGenerator(
        lambda: model, tokenizer, sampling_args(generation_kwargs={"no_repeat_ngram_size": 2}), [2]
    )
    assert not generator.supported
    assert not StaticCacheGenerator(
        lambda: model, tokenizer, SimpleNamespace(**vars(sampling_args()), use_fast_decoder=False), [2]
    ).supported
    assert len(generator.generate(chat_prompts(tokenizer, 1), 5)) == 3


def test_sampler_restores_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    StaticCacheGenerator(lambda: model, tokenizer, sampling_args(), [2]).generate(
        chat_prompts(tokenizer, 1), 3
    )
    assert model.training
    model.eval()


# --------------------------------------------------------------------------------- layer records


def sample_with_record(model, tokenizer, length: int = 12):
    generator = StaticCacheGenerator(
        lambda: model,
        tokenizer,
        sampling_args(generation_kwargs={"min_new_tokens": length}),
        [tokenizer.eos_token_id],
        record_budget_bytes=1 << 30,
        version_getter=lambda: 7,
    )
    prompts = chat_prompts(tokenizer, 3)
    torch.manual_seed(0)
    out = generator.generate(prompts, length)
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_token_id)
    completions = torch.tensor(out)
    return generator.last_record, prompt_ids, prompt_mask, completions


def test_a_layer_record_replaces_the_forward_exactly_where_it_applies(tiny):
    model, tokenizer = tiny
    record, prompt_ids, prompt_mask, completions = sample_with_record(model, tokenizer)
    assert record is not None and record.version == 7
    rows = torch.tensor([1, 2, 4, 6, 7])  # a micro-batch: rows of several groups
    layout = PackedLayout.build(prompt_ids[rows], prompt_mask[rows], completions[rows])
    layer_record = record.layer_record(rows, layout)
    assert layer_record is not None and len(layer_record) == len(model.model.layers) + 1
    view = DecoderView.of(model)
    weights = torch.randn(len(rows), completions.shape[1], model.config.vocab_size)

    def run(use_record):
        model.zero_grad(set_to_none=True)
        logits = packed_completion_logits(
            view,
            prompt_ids[rows],
            prompt_mask[rows],
            completions[rows],
            checkpoint=True,
            record=layer_record if use_record else None,
            layout=layout,
        )
        (logits.log_softmax(-1) * weights).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    model.train()
    try:
        logits_a, grads_a = run(True)
        logits_b, grads_b = run(False)
    finally:
        model.eval()
    torch.testing.assert_close(logits_a, logits_b, rtol=1e-5, atol=1e-5)
    assert_same_gradients(grads_a, grads_b)

    changed = completions.clone()
    changed[4, 3] = (changed[4, 3] + 1) % model.config.vocab_size
    other = PackedLayout.build(prompt_ids[rows], prompt_mask[rows], changed[rows])
    assert record.layer_record(rows, other) is None  # a token that was not sampled
    shorter = PackedLayout.build(prompt_ids[rows], prompt_mask[rows], completions[rows, :-2])
    assert record.layer_record(rows, shorter) is None
    assert record.layer_record(rows + 1, layout) is None  # other rows' prompts and tokens


def test_no_record_beyond_the_budget(tiny):
    model, tokenizer = tiny
    generator = StaticCacheGenerator(lambda: model, tokenizer, sampling_args(), [2], record_budget_bytes=1024)
    generator.generate(chat_prompts(tokenizer, 2), 8)
    assert generator.last_record is None


# ------------------------------------------------------------------------ zero-advantage rows


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_skipping_zero_advantage_rows_keeps_loss_and_gradient(loss_type):
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 11, requires_grad=True)
    inputs = {
        "completion_ids": torch.randint(0, 11, (6, 5)),
        "completion_mask": torch.ones(6, 5),
        "valid": torch.tensor([1.0, 1, 1, 1, 0, 1]),
        "advantages": torch.tensor([0.0, 0.7, 0.0, -0.7, 0.5, 0.0]),
    }
    inputs["completion_mask"][1, -2:] = 0
    trainer = SimpleNamespace(
        args=SimpleNamespace(
            epsilon=0.2,
            epsilon_high=0.2,
            importance_sampling_level="token",
            loss_type=loss_type,
            max_completion_length=5,
            beta=0.0,
        )
    )
    full = policy_gradient_loss(trainer, logits, inputs)
    (full_grad,) = torch.autograd.grad(full, logits)
    rows = rows_with_policy_gradient(inputs, beta=0.0)
    assert rows.tolist() == [1, 3]
    part = policy_gradient_loss(trainer, logits[rows], inputs, rows=rows)
    (part_grad,) = torch.autograd.grad(part, logits)
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(part_grad, full_grad)
    assert rows_with_policy_gradient(inputs, beta=0.04) is None


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("algorithm", ["sdpo", "grpo"])
def test_training_on_the_fast_path_matches_the_library_path(tmp_path, algorithm):
    """Two steps with our sampler, packed forwards and layer records land on the same
    weights as two steps through generate() and the model's own forward and checkpointing."""
    from datasets import Dataset

    from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer

    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"Solve {i}+{i}."}] for i in range(4)],
            "privileged_context": ["Use the boxed format."] * 4,
        }
    )

    def reward(prompts, completions, completion_ids, **kwargs):
        return [float(sum(ids) % 2) for ids in completion_ids]

    config_cls, trainer_cls = (SDPOConfig, SDPOTrainer) if algorithm == "sdpo" else (GRPOConfig, GRPOTrainer)
    extra = {"include_environment_feedback": True, "full_logit_distillation": True, "distillation_topk": 8}
    results = []
    for fast in (True, False):
        model, tokenizer = build_tiny_model()
        args = config_cls(
            output_dir=str(tmp_path / f"fast-{fast}"),
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=10,
            max_steps=2,
            optim="sgd",  # Adam would turn float-rounding noise in ~0 gradients into full-size steps
            learning_rate=0.5,
            gradient_checkpointing=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=3,
            use_fast_decoder=fast,
            match_generate_sampling=True,  # generate()'s random stream, so both paths draw the same tokens
            **(extra if algorithm == "sdpo" else {}),
        )
        trainer = trainer_cls(
            model=model, processing_class=tokenizer, reward_funcs=reward, args=args, train_dataset=dataset
        )
        used: list = []

        def spy(*a, original=trainer._layer_record, used=used):
            used.append(original(*a))
            return used[-1]

        trainer._layer_record = spy
        supports: list = []

        def support_spy(*a, original=trainer.recorded_support, supports=supports):
            supports.append(original(*a))
            return supports[-1]

        trainer.recorded_support = support_spy
        trainer.train()
        results.append(({n: p.detach().clone() for n, p in trainer.model.named_parameters()}, used, supports))
    (fast_weights, fast_records, fast_supports), (slow_weights, _, _) = results
    assert any(r is not None for r in fast_records), "the sampling-time layer record was never used"
    if algorithm == "sdpo":  # the top-k support came from sampling too
        assert fast_supports and all(s is not None for s in fast_supports)
    for name, want in slow_weights.items():
        torch.testing.assert_close(fast_weights[name], want, rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.equal(w, build_tiny_model()[0].state_dict()[n]) for n, w in fast_weights.items())


# -------------------------------------------------------------------------- sparse top-k head


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sparse_topk_head_matches_the_dense_top_k_loss(monkeypatch, temperature):
    from sdpo_agent import topk_head
    from sdpo_agent.losses import self_distillation_per_token_loss, topk_renormalised_divergence

    monkeypatch.setattr(topk_head, "_CHUNK_ELEMENTS", 200)  # several backward chunks
    model = FAMILIES["llama"]()
    view = DecoderView.of(model)
    assert topk_head.sparse_head_supported(view)
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, SMALL["hidden_size"], requires_grad=True)
    teacher = torch.randn(3, 5, SMALL["vocab_size"])
    ids = torch.randint(0, SMALL["vocab_size"], (3, 5))

    def grads(loss):
        model.zero_grad(set_to_none=True)
        hidden.grad = None
        loss.sum().backward()
        return hidden.grad.clone(), model.lm_head.weight.grad.clone(), model.model.norm.weight.grad.clone()

    dense_loss = self_distillation_per_token_loss(
        view.logits(hidden) / temperature, teacher, ids, full_logit_distillation=True, topk=6, alpha=0.5
    )
    dense = grads(dense_loss)
    student = topk_head.topk_student(view, hidden, ids, 6, temperature)
    sparse_loss = topk_renormalised_divergence(student.topk_logits, teacher.gather(-1, student.indices), 0.5)
    torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads(sparse_loss), dense):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    want_logps = torch.log_softmax(view.logits(hidden).detach() / temperature, -1).gather(-1, ids[..., None])
    torch.testing.assert_close(student.token_log_probs, want_logps.squeeze(-1))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_sampler_records_the_students_top_k_support(temperature):
    """What ``topk_student`` would compute from the full logits, recorded while sampling."""
    model, tokenizer = build_tiny_model()
    args = sampling_settings(temperature, generation_kwargs={"min_new_tokens": 6})  # an EOS ban in place
    generator = StaticCacheGenerator(
        lambda: model, tokenizer, args, [tokenizer.eos_token_id], record_budget_bytes=1 << 30
    )
    generator.support_topk = 5
    prompts = chat_prompts(tokenizer, 2)
    torch.manual_seed(0)
    completions = generator.generate(prompts, 10)
    width = max(len(c) for c in completions)
    ids = torch.full((len(completions), width), tokenizer.pad_token_id)
    for row, completion in enumerate(completions):
        ids[row, : len(completion)] = torch.tensor(completion)
    rows = torch.arange(len(completions))
    record = generator.last_record
    support = record.topk_support(rows, ids, 5, temperature)
    assert support is not None and support.indices.shape == (len(completions), width, 5)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + completion])).logits[0] / temperature
        logits = logits[len(prompt) - 1 : len(prompt) - 1 + len(completion)]
        values, indices = logits.topk(5, dim=-1)
        n = len(completion)
        assert torch.equal(support.indices[row, :n], indices)
        torch.testing.assert_close(support.values[row, :n], values, rtol=1e-5, atol=1e-5)
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
        torch.testing.assert_close(support.token_log_probs[row, :n], want, rtol=1e-5, atol=1e-5)
    # Recorded for this k, this temperature and these tokens only.
    assert record.topk_support(rows, ids, 4, temperature) is None
    assert record.topk_support(rows, ids, 5, temperature + 0.1) is None
    other = ids.clone()
    other[0, 0] = (other[0, 0] + 1) % model.config.vocab_size
    assert record.topk_support(rows, other, 5, temperature) is None
    generator.support_topk = 0
    generator.generate(prompts, 10)
    assert generator.last_record.support is None
