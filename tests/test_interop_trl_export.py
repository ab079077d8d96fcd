"""sdpo environments as TRL ``environment_factory`` classes, trained by TRL's own GRPOTrainer."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from transformers.utils import get_json_schema

import sdpo_envs
from sdpo_envs import TextEnv
from sdpo_envs.interop.trl_export import SDPOEnvironment, trl_dataset, trl_environment

ADD_TASK = {
    "task_id": "add",
    "prompt": "Write add(a, b) that returns a + b.",
    "tests": [{"kind": "call", "fn": "add", "args": [1, 2], "expected": 3, "public": True}],
}
EMPTY_PROMPT = [{"role": "user", "content": ""}]


def tools_of(cls: type) -> list[str]:
    """What TRL 1.16 takes as tools: the class's public functions but reset and get_reward."""
    names = [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction)]
    return sorted(n for n in names if not n.startswith("_") and n not in ("reset", "get_reward"))


def test_tool_env_exports_each_tool_as_a_typed_documented_method():
    cls = trl_environment("sdpo/ToolUse-v0")
    env = cls()
    toolbox = env.env.toolbox
    assert cls.__name__ == "ToolUseV0" and issubclass(cls, SDPOEnvironment)
    assert tools_of(cls) == sorted([*toolbox.names, "submit"])
    for name in toolbox.names:
        schema = get_json_schema(getattr(env, name))["function"]
        assert schema["name"] == name
        assert schema["parameters"] == toolbox[name].parameters
        assert schema["description"] == toolbox[name].schema["function"]["description"]
    submit = get_json_schema(env.submit)["function"]
    assert list(submit["parameters"]["properties"]) == ["answer"]
    assert env.env.tools_in_prompt is False  # TRL renders the schemas itself


def test_tool_calls_are_env_steps_judged_by_the_env():
    env = trl_environment("sdpo/ToolUse-v0")()
    text = env.reset(prompt=EMPTY_PROMPT, task_index=5)
    task = env.env.task
    assert task["question"] in text and "`submit` tool" in text
    assert "Error: unexpected argument" in getattr(env, task["tools"][0])(bogus=1)  # the env's own check
    assert env.verdict == "format_error" and env.reward == 0.0  # still open: no final answer yet
    assert "unexpected argument" in env.feedback_text  # the last step's feedback is kept
    for call in task["reference_calls"]:
        assert not getattr(env, call["name"])(**call["arguments"]).startswith("Error")
    result = env.submit(answer=str(task["answer"]))
    assert env.verdict == "pass" and env.get_reward() == 1.0 and result == env.feedback_text
    assert "episode is over" in env.submit(answer="0")
    assert [m["role"] for m in env.messages][-2:] == ["tool", "assistant"]


def test_answer_without_the_required_tool_is_the_envs_tool_error():
    env = trl_environment("sdpo/ToolUse-v0")()
    env.reset(prompt=EMPTY_PROMPT, task_index=5)
    env.submit(answer=str(env.env.task["answer"]))
    assert env.verdict == "tool_error" and env.get_reward() == 0.0
    assert "without a successful call" in env.feedback_text


def test_code_env_submit_fences_the_code_and_retries_on_feedback():
    env = trl_environment("sdpo/CodeExec-v0", dataset=[ADD_TASK], max_submissions=2)()
    assert tools_of(type(env)) == ["submit"]
    assert list(get_json_schema(env.submit)["function"]["parameters"]["properties"]) == ["code"]
    assert ADD_TASK["prompt"] in env.reset(prompt=EMPTY_PROMPT, task_index=0)
    first = env.submit(code="def add(a, b):\n    return a - b")
    assert env.verdict == "wrong_answer" and "1 submission left" in first
    assert "expected" in env.feedback_text.lower()
    env.submit(code="def add(a, b):\n    return a + b")
    assert env.verdict == "pass" and env.get_reward() == 1.0 and env.submissions == 2


def test_task_rows_as_columns_and_a_prompt_that_already_has_text():
    env = trl_environment("sdpo/CodeExec-v0", dataset=[ADD_TASK])()
    prompt = [{"role": "user", "content": "Solve it."}]
    row = {**ADD_TASK, "task_id": "row"}  # its own "prompt" field: in a "task" column
    assert env.reset(prompt=prompt, task=json.dumps(row)) is None  # TRL keeps its prompt
    assert env.env.task["task_id"] == "row"
    env.submit(code="def add(a, b):\n    return a + b")
    assert env.get_reward() == 1.0
    mcq = trl_environment("sdpo/MCQ-v0")()
    task = mcq.env.tasks[3]
    text = mcq.reset(prompt=EMPTY_PROMPT, **task)  # the columns are the task row
    assert mcq.env.task == mcq.env.validate_task(task) and text.startswith(mcq.env.messages[-1]["content"])
    with pytest.raises(ValueError, match="column 'task' must hold a task row"):
        mcq.reset(prompt=EMPTY_PROMPT, task=3)


def test_without_a_dataset_each_instance_draws_its_task_from_its_own_seed():
    def drawn(cls, n):
        instances = [cls() for _ in range(n)]
        for instance in instances:
            instance.reset(prompt=EMPTY_PROMPT)  # TRL's placeholder row
        return [instance.env.task["task_id"] for instance in instances]

    first = drawn(trl_environment("sdpo/ToolUse-v0", seed=7), 3)
    assert first == drawn(trl_environment("sdpo/ToolUse-v0", seed=7), 3)  # seed + k, reproducible
    assert len(set(first)) == 3
    env = trl_environment("sdpo/ToolUse-v0", seed=7)()
    assert "`submit` tool" in env.reset(prompt=EMPTY_PROMPT)


def test_a_rollout_without_submit_is_a_format_error_and_a_judge_fault_is_no_reward():
    env = trl_environment("sdpo/MCQ-v0")()
    env.reset(prompt=EMPTY_PROMPT, task_index=0)
    assert env.get_reward() == 0.0 and env.verdict == "format_error"
    assert "without a call to the `submit` tool" in env.feedback_text

    class Broken(TextEnv):
        default_dataset = [{"q": "x"}]

        def build_messages(self, task):
            return [{"role": "user", "content": "Say x."}]

        def judge(self, task, action):
            raise RuntimeError("checker crashed")

    broken = trl_environment(Broken, name="Broken")()
    broken.reset(prompt=EMPTY_PROMPT)
    broken.submit(answer="x")
    assert broken.verdict == "judge_error" and broken.get_reward() is None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown environment 'sdpo/Nope-v0'"):
        trl_environment("sdpo/Nope-v0")
    with pytest.raises(ValueError, match="max_submissions must be >= 1"):
        trl_environment("sdpo/MCQ-v0", max_submissions=0)
    with pytest.raises(ValueError, match="procedural"):
        trl_dataset(trl_environment("sdpo/ToolUse-v0"))
    with pytest.raises(ValueError, match="clash"):
        trl_environment("sdpo/ToolUse-v0", tools=[_submit_tool])
    assert trl_dataset(trl_environment("sdpo/ToolUse-v0"), n=3)["task_index"] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"only_tools names unknown tool\(s\) \['sq1'\]"):
        trl_environment("sdpo/ToolUse-v0", only_tools=["sq1"])
    assert tools_of(trl_environment("sdpo/ToolUse-v0", only_tools=["sql"])) == ["sql", "submit"]


def _submit_tool(x: str) -> str:
    """A user tool whose name clashes with the answer tool.

    Args:
        x: anything.
    """
    return x


# -- TRL's own GRPOTrainer -----------------------------------------------------------------------
def teach(model, pad_id: int, examples: list[tuple[list[int], list[list[int]]]], steps: int = 60) -> None:
    """Fit the tiny model to continue each prompt (token ids) with one of its targets (equally
    likely), so that its rollouts call the tools. A prompt's keys and values are computed without
    gradient (prompts are long, answers short)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        for prompt, targets in examples:
            rows = [prompt + target for target in targets]
            width = max(map(len, rows))
            ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
            labels = torch.tensor([t + [-100] * (width - len(prompt) - len(t)) for t in targets])
            with torch.no_grad():
                cache = model(input_ids=torch.tensor([prompt[:-1]]), use_cache=True).past_key_values
            for layer in cache.layers:
                layer.keys = layer.keys.expand(len(rows), -1, -1, -1).contiguous()
                layer.values = layer.values.expand(len(rows), -1, -1, -1).contiguous()
            logits = model(input_ids=ids[:, len(prompt) - 1 : -1], past_key_values=cache).logits
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=-100
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def tool_call_ids(tokenizer, name: str, **arguments) -> list[int]:
    """The tokens of one Hermes tool call ending the assistant's turn."""
    call = json.dumps({"name": name, "arguments": arguments})
    return tokenizer(f"<tool_call>\n{call}\n</tool_call><|im_end|>", add_special_tokens=False).input_ids


def prompt_ids(tokenizer, environment_cls, instance, text: str) -> list[int]:
    """The prompt as TRL renders it: the reset text as the user message, the class's tools."""
    tools = [getattr(instance, name) for name in tools_of(environment_cls)]
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, return_dict=False)


def tool_suffix_ids(tokenizer, name: str, content: str) -> list[int]:
    """What TRL appends after a tool call: the tool message and the next assistant header."""
    call = [{"type": "function", "function": {"name": name, "arguments": {}}}]
    dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "", "tool_calls": call}]
    prefix = tokenizer.apply_chat_template(dummy, return_dict=False)
    full = tokenizer.apply_chat_template(
        [*dummy, {"role": "tool", "name": name, "content": content}],
        add_generation_prompt=True,
        return_dict=False,
    )
    prefix = prefix[: len(prefix) - prefix[::-1].index(tokenizer.eos_token_id)]  # up to the last EOS, as TRL
    return full[len(prefix) :]


def tiny_tool_caller():
    from trl.chat_template_utils import qwen3_template

    from sdpo_agent.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model()
    tokenizer.padding_side = "left"
    # The tiny tokenizer's template is Hermes/Qwen-style; TRL parses tool calls with Qwen's template.
    tokenizer.response_template = qwen3_template
    return model, tokenizer


@pytest.fixture
def one_thread():
    # The tiny model is fastest on one core; more threads only contend on a shared machine.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_trl_grpo_trainer_trains_two_steps_on_exported_code_exec(tmp_path, monkeypatch, one_thread):
    trl = pytest.importorskip("trl")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    environment = trl_environment("sdpo/CodeExec-v0", dataset=[ADD_TASK])
    model, tokenizer = tiny_tool_caller()
    probe = environment()
    prompt = prompt_ids(tokenizer, environment, probe, probe.reset(prompt=EMPTY_PROMPT, task_index=0))
    right, wrong = "def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b"
    targets = [tool_call_ids(tokenizer, "submit", code=code) for code in (right, wrong)]
    teach(model, tokenizer.pad_token_id, [(prompt, targets)])

    seen: list[list[tuple[str | None, float | None, str]]] = []

    def read_feedback(completions, environments, **kwargs):
        seen.append([(e.verdict, e.reward, e.feedback_text) for e in environments])
        return [0.0] * len(completions)

    args = trl.GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=96,
        max_tool_calling_iterations=1,
        learning_rate=1e-4,
        logging_steps=1,
        report_to=[],
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[read_feedback],
        args=args,
        train_dataset=trl_dataset(environment),
        processing_class=tokenizer,
        environment_factory=environment,
    )
    assert trainer.train().global_step == 2

    logs = [h for h in trainer.state.log_history if "rewards/CodeExecV0/mean" in h]
    assert len(logs) == 2 and len(seen) == 2
    verdicts = {v for step in seen for v, _, _ in step}
    assert verdicts <= set(sdpo_envs.VERDICTS) and verdicts & {"pass", "wrong_answer"}, verdicts
    for step, log in zip(seen, logs):
        # TRL's reward column is the judge's: 1 exactly for the rollouts whose verdict is pass.
        assert [r for v, r, _ in step] == [1.0 if v == "pass" else 0.0 for v, _, _ in step]
        assert log["rewards/CodeExecV0/mean"] == pytest.approx(sum(r for _, r, _ in step) / len(step))
    failed = [text for step in seen for v, _, text in step if v == "wrong_answer"]
    assert all("Wrong answer" in text for text in failed)


def grpo_config(trl, tmp_path, **overrides):
    return trl.GRPOConfig(
        **{
            "output_dir": str(tmp_path),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "report_to": [],
            "bf16": False,
            "use_cpu": True,
            "save_strategy": "no",
            "disable_tqdm": True,
            "seed": 0,
            **overrides,
        }
    )


def test_trl_grpo_trainer_trains_two_steps_on_exported_tool_use_multi_turn(tmp_path, monkeypatch, one_thread):
    trl = pytest.importorskip("trl")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    environment = trl_environment("sdpo/ToolUse-v0", only_tools=["convert"])  # a short prompt
    model, tokenizer = tiny_tool_caller()
    probe = environment()
    first = prompt_ids(tokenizer, environment, probe, probe.reset(prompt=EMPTY_PROMPT, task_index=3))
    task = probe.env.task
    (call,) = task["reference_calls"]  # one call: convert a unit
    result = getattr(probe, call["name"])(**call["arguments"])
    calling = tool_call_ids(tokenizer, call["name"], **call["arguments"])
    second = first + calling + tool_suffix_ids(tokenizer, call["name"], result)
    answers = [tool_call_ids(tokenizer, "submit", answer=a) for a in (str(task["answer"]), "2.548")]
    teach(model, tokenizer.pad_token_id, [(first, [calling]), (second, answers)])

    seen = []

    def read_feedback(completions, environments, **kwargs):
        seen.append([(e.verdict, e.reward, [m["role"] for m in e.messages]) for e in environments])
        return [0.0] * len(completions)

    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[read_feedback],
        args=grpo_config(trl, tmp_path, max_completion_length=256, max_tool_calling_iterations=2),
        train_dataset=trl_dataset(environment, n=4).select([3]),
        processing_class=tokenizer,
        environment_factory=environment,
    )
    assert trainer.train().global_step == 2
    logs = [h for h in trainer.state.log_history if "rewards/ToolUseV0/mean" in h]
    assert len(logs) == 2 and len(seen) == 2
    for step, log in zip(seen, logs):
        assert [r for v, r, _ in step] == [1.0 if v == "pass" else 0.0 for v, _, _ in step]
        assert log["rewards/ToolUseV0/mean"] == pytest.approx(sum(r for _, r, _ in step) / len(step))
    judged = [(v, roles) for step in seen for v, _, roles in step if v in ("pass", "wrong_answer")]
    assert judged, seen  # some rollouts called the tool, read its result, then answered
    assert all(roles[-3:] == ["assistant", "tool", "assistant"] for _, roles in judged)


# -- our trainers take TRL's environment_factory= too ------------------------------------------------
FAST = {
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 8,
    "logging_steps": 1,
    "report_to": "none",
    "save_strategy": "no",
    "disable_tqdm": True,
}


def test_sdpo_trainer_takes_environment_factory_with_the_feedback_in_the_reprompt(tmp_path):
    from sdpo_agent import SDPOConfig, SDPOTrainer
    from sdpo_agent.models.tiny import build_tiny_model

    captured = []

    class Capture:
        def on_teacher_context_built(self, teacher_input_ids, **kwargs):
            captured.append(teacher_input_ids)

        def __getattr__(self, name):
            return lambda *a, **k: None

    environment = trl_environment("sdpo/MCQ-v0")
    model, tokenizer = build_tiny_model()
    args = SDPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        include_environment_feedback=True,
        env_kwargs={"feedback_fn": lambda step: step.environment.feedback_text},
        **FAST,
    )
    trainer = SDPOTrainer(
        model=model,
        args=args,
        environment_factory=environment,
        train_dataset=trl_dataset(environment, n=4),
        processing_class=tokenizer,
        callbacks=[Capture()],
    )
    trainer.train()
    assert trainer.state.global_step == 2
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for batch in captured for ids in batch]
    # The tiny model calls no tool: the export's verdict reached the teacher through the instance.
    assert any("without a call to the `submit` tool" in t for t in texts)


def test_grpo_trainer_takes_environment_factory_and_trl_reward_functions(tmp_path):
    from sdpo_agent import GRPOConfig, GRPOTrainer
    from sdpo_agent.models.tiny import build_tiny_model

    calls = []

    def verdict_bonus(completions, environments, **kwargs):  # TRL's convention next to an environment
        calls.append([e.verdict for e in environments])
        return [0.0 for _ in environments]

    environment = trl_environment("sdpo/MCQ-v0")
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, **FAST)
    trainer = GRPOTrainer(
        model=model,
        args=args,
        reward_funcs=[verdict_bonus],
        environment_factory=environment,
        train_dataset=trl_dataset(environment, n=4),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 2 and calls
    assert all(
        v == ["format_error"] for v in calls
    )  # one instance per rollout; no submit call: the export says so
    with pytest.raises(ValueError, match="env= or environment_factory=, not both"):
        GRPOTrainer(model=model, args=args, env="sdpo/MCQ-v0", environment_factory=environment)
    with pytest.raises(ValueError, match="dict environment_factory"):
        GRPOTrainer(model=model, args=args, environment_factory={"mcq": environment})
