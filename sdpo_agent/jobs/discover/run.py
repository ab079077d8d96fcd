"""Test-time discovery on single hard questions: SDPO against best-of-k and multi-turn retries.

Every method gets the same question, initial weights, sampling settings and attempt budget,
and an attempt is always one generated completion judged by the environment:

* ``sdpo``: test-time SDPO on the one question. Each step samples a group of G attempts,
  the environment's feedback (and any successful sibling) conditions the EMA self-teacher,
  and the policy is distilled towards it (reverse KL on the student's top-K logits). The
  model is re-loaded from the initial weights for every question × seed.
* ``best_of_k``: n ≥ budget i.i.d. samples from the initial model. Its discovery@k is
  pass@k by the unbiased estimator over the samples of all seeds of a question.
* ``retries``: one conversation per seed; after each failed attempt the environment's
  feedback is appended as a user turn. When the conversation outgrows a token window the
  oldest past attempts are replaced by a placeholder first, feedback texts last.

For ``sdpo`` and ``retries``, discovery@k is the fraction of chains (question × seed) whose
first success came within k attempts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdpo_envs.wrappers import DEFAULT_RETRY_TEMPLATE

from ..evaluate import pass_at_k

METHODS = ("sdpo", "best_of_k", "retries")
METHOD_LABELS = {
    "sdpo": "SDPO (test-time)",
    "best_of_k": "best-of-k (i.i.d.)",
    "retries": "multi-turn retries",
}
OMITTED_ATTEMPT = "[earlier attempt omitted to fit the context window]"
Messages = list[dict[str, Any]]


@dataclass
class DiscoverySpec:
    """Everything that determines a discovery run, except which questions, seeds and methods."""

    env: str
    model: str
    budget: int = 16
    group_size: int = 4
    topk: int = 100
    learning_rate: float = 1e-5
    max_completion_length: int = 256
    temperature: float = 1.0
    retry_window_tokens: int = 2048
    best_of_samples: int | None = None  # per seed; None means the budget
    stop_at_first_success: bool = True
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    sdpo_overrides: dict[str, Any] = field(default_factory=dict)  # any SDPOConfig field

    def __post_init__(self) -> None:
        if self.budget < 1 or self.group_size < 1 or self.topk < 1:
            raise ValueError("budget, group_size and topk must be >= 1")
        if self.best_of_samples is not None and self.best_of_samples < self.budget:
            raise ValueError(
                f"best_of_samples ({self.best_of_samples}) must be >= budget ({self.budget}): "
                "the unbiased pass@k estimator needs n >= k samples"
            )
        if self.retry_window_tokens < 1:
            raise ValueError(f"retry_window_tokens must be >= 1, got {self.retry_window_tokens}")

    @property
    def use_vllm(self) -> bool:
        """``--set use_vllm=true`` samples every method with vLLM, not only the SDPO trainer."""
        return bool(self.sdpo_overrides.get("use_vllm", False))

    @property
    def samples_per_seed(self) -> int:
        return self.best_of_samples or self.budget

    def key(self) -> str:
        """Hash of the settings a finished unit depends on; a rerun reuses only matching units."""
        payload = json.dumps({**dataclasses.asdict(self), "recipe": 1}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Attempt:
    success: bool
    verdict: str
    reward: float | None = None


@dataclass
class UnitResult:
    """One method on one question with one seed: its attempts in the order they were made."""

    method: str
    task_id: str
    task_index: int
    seed: int
    budget: int
    attempts: list[Attempt]
    wall_s: float = 0.0
    first_success_text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    spec_key: str = ""

    @property
    def first_success(self) -> int | None:
        """1-based attempt index of the first success within the budget, or None."""
        return first_success_index([a.success for a in self.attempts], self.budget)

    @property
    def successes(self) -> int:
        return sum(a.success for a in self.attempts)

    @property
    def judge_errors(self) -> int:
        return sum(a.verdict == "judge_error" for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "first_success": self.first_success}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitResult:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values["attempts"] = [Attempt(**a) for a in data["attempts"]]
        return cls(**values)


def first_success_index(successes: Sequence[bool], budget: int) -> int | None:
    for index, success in enumerate(successes[:budget]):
        if success:
            return index + 1
    return None


# ------------------------------------------------------------------------------ curves


def chain_discovery_curve(first_successes: Sequence[int | None], budget: int) -> list[float]:
    """discovery@k for k = 1..budget: the fraction of chains whose first success is ≤ k."""
    if not first_successes:
        return [math.nan] * budget
    found = [f for f in first_successes if f is not None]
    return [sum(f <= k for f in found) / len(first_successes) for k in range(1, budget + 1)]


def best_of_k_curve(n: int, c: int, budget: int) -> list[float]:
    """discovery@k of i.i.d. sampling = pass@k, from n ≥ budget samples with c successes."""
    return [pass_at_k(n, c, k) for k in range(1, budget + 1)]


def discovery_curves(units: Sequence[UnitResult], budget: int) -> dict[str, dict[str, list[float]]]:
    """Per method: a curve per question and their mean (``"all"``), questions weighted equally."""
    out: dict[str, dict[str, list[float]]] = {}
    for method in METHODS:
        mine = [u for u in units if u.method == method]
        if not mine:
            continue
        per_task: dict[str, list[float]] = {}
        for task in dict.fromkeys(u.task_id for u in mine):
            runs = [u for u in mine if u.task_id == task]
            if method == "best_of_k":
                # The samples of all seeds are i.i.d. draws from the same initial model: pool them.
                n = sum(len(u.attempts) for u in runs)
                per_task[task] = best_of_k_curve(n, sum(u.successes for u in runs), budget)
            else:
                per_task[task] = chain_discovery_curve([u.first_success for u in runs], budget)
        out[method] = {**per_task, "all": list(np.mean(list(per_task.values()), axis=0))}
    return out


# ------------------------------------------------------------------------------ tasks


def resolve_tasks(env: Any, tokens: Sequence[str]) -> list[tuple[int, str]]:
    """``(index, task_id)`` for each token: an exact task id of a finite set, else an index."""
    tasks = env.tasks
    if tasks is None:
        raise ValueError(f"{type(env).__name__} has no task set to pick questions from")
    ids: dict[str, int] = {}
    if tasks.is_finite:
        ids = {env.task_id(tasks[i], i): i for i in range(len(tasks))}
    resolved = []
    for token in tokens:
        token = token.strip()
        if token in ids:
            index = ids[token]
        elif re.fullmatch(r"\d+", token) and int(token) < len(tasks):
            index = int(token)
        else:
            known = ", ".join(list(ids)[:5]) + (", ..." if len(ids) > 5 else "")
            raise ValueError(
                f"no task {token!r}: give a task id{f' ({known})' if known else ''} "
                f"or an index in [0, {len(tasks)})"
            )
        _, info = env.reset(options={"index": index})
        resolved.append((index, str(info["task_id"])))
    return resolved


# ------------------------------------------------------------------------------ retries window


@dataclass
class RetryWindow:
    messages: Messages
    attempts_dropped: int
    feedback_dropped: int
    tokens: int


def fit_retry_window(
    prompt: Messages,
    history: Sequence[tuple[str, str]],
    count_tokens: Callable[[Messages], int],
    max_tokens: int,
    placeholder: str = OMITTED_ATTEMPT,
) -> RetryWindow:
    """The retry conversation, bounded to ``max_tokens``.

    ``history`` holds ``(attempt, feedback message)`` pairs, oldest first. Over the window,
    past attempts are replaced by ``placeholder`` oldest first (the turn stays, so roles
    still alternate); only when every attempt is gone are the oldest feedback turns dropped
    (with their placeholder), and the latest feedback is always kept. Feedback outlives
    attempts because it is the short, informative part of a failure.
    """

    def render(dropped_attempts: int, dropped_pairs: int) -> Messages:
        messages = [dict(m) for m in prompt]
        for i, (attempt, feedback) in enumerate(history):
            if i < dropped_pairs:
                continue
            text = placeholder if i < dropped_attempts else attempt
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": feedback}]
        return messages

    dropped_attempts = dropped_pairs = 0
    messages = render(0, 0)
    tokens = count_tokens(messages)
    while tokens > max_tokens:
        if dropped_attempts < len(history):
            dropped_attempts += 1
        elif dropped_pairs < len(history) - 1:
            dropped_pairs += 1
        else:
            break  # prompt + latest feedback alone exceed the window: nothing else may go
        messages = render(dropped_attempts, dropped_pairs)
        tokens = count_tokens(messages)
    return RetryWindow(messages, dropped_attempts, dropped_pairs, tokens)


# ------------------------------------------------------------------------------ methods


def _prompt_ids(tokenizer: Any, messages: Messages, tools: Any = None) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )


def run_best_of_k(
    model: Any,
    tokenizer: Any,
    env_factory: Callable[[], Any],
    task_index: int,
    task_id: str,
    seed: int,
    spec: DiscoverySpec,
    *,
    batch_size: int = 16,
) -> UnitResult:
    """``spec.samples_per_seed`` i.i.d. samples from ``model`` on one question, in order."""
    import torch

    from ...rollout.agent_loop import AgentLoop, EpisodeContext
    from ...rollout.backends import sampling_generator
    from ...rollout.generation import sampling_settings

    start = time.monotonic()
    eos = sorted({tokenizer.eos_token_id} - {None})
    settings = sampling_settings(spec.temperature, use_vllm=spec.use_vllm)
    generator = sampling_generator(model, tokenizer, settings, eos, seed=seed)
    envs = [env_factory() for _ in range(min(batch_size, spec.samples_per_seed))]
    loop = AgentLoop(
        generator,
        tokenizer,
        max_completion_length=spec.max_completion_length,
        max_turns=max(1, getattr(envs[0], "max_turns", 1)),
        eos_token_ids=eos,
    )
    torch.manual_seed(seed)
    attempts: list[Attempt] = []
    first_text = None
    remaining = spec.samples_per_seed
    while remaining > 0:
        chunk = envs[: min(batch_size, remaining)]
        contexts, prompts = [], []
        for env in chunk:
            _, info = env.reset(options={"index": task_index})
            tools = None if getattr(env, "tools_in_prompt", False) else info.get("tools")
            contexts.append(EpisodeContext(env=env, messages=info["messages"], tools=tools))
            prompts.append(_prompt_ids(tokenizer, info["messages"], tools))
        for rollout in loop.run(prompts, contexts):
            attempts.append(_attempt(rollout.feedback, rollout.env_reward))
            if attempts[-1].success and first_text is None:
                first_text = tokenizer.decode(rollout.completion_ids, skip_special_tokens=True)
        remaining -= len(chunk)
    return UnitResult(
        "best_of_k",
        task_id,
        task_index,
        seed,
        spec.budget,
        attempts,
        wall_s=time.monotonic() - start,
        first_success_text=first_text,
    )


def run_retries(
    model: Any,
    tokenizer: Any,
    env: Any,
    task_index: int,
    task_id: str,
    seed: int,
    spec: DiscoverySpec,
    *,
    template: str = DEFAULT_RETRY_TEMPLATE,
) -> UnitResult:
    """One retry conversation on one question; it ends at the first success or the budget."""
    import torch

    from ...rollout.backends import sampling_generator
    from ...rollout.generation import sampling_settings

    if getattr(env, "max_turns", 1) > 1:
        raise ValueError(
            f"the retries baseline needs a single-turn env (one answer per attempt); "
            f"{type(env).__name__} has max_turns={env.max_turns}"
        )
    start = time.monotonic()
    eos = sorted({tokenizer.eos_token_id} - {None})
    settings = sampling_settings(spec.temperature, use_vllm=spec.use_vllm)
    generator = sampling_generator(model, tokenizer, settings, eos, seed=seed)
    torch.manual_seed(seed)
    _, info = env.reset(options={"index": task_index})
    prompt = info["messages"]
    history: list[tuple[str, str]] = []
    attempts: list[Attempt] = []
    most_dropped = most_feedback_dropped = max_tokens = 0
    first_text = None
    for _ in range(spec.budget):
        window = fit_retry_window(
            prompt, history, lambda m: len(_prompt_ids(tokenizer, m)), spec.retry_window_tokens
        )
        most_dropped = max(most_dropped, window.attempts_dropped)
        most_feedback_dropped = max(most_feedback_dropped, window.feedback_dropped)
        max_tokens = max(max_tokens, window.tokens)
        ids = generator.generate([_prompt_ids(tokenizer, window.messages)], spec.max_completion_length)[0]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        env.reset(options={"index": task_index})  # a fresh judgement of the same question
        _, reward, _, _, step_info = env.step(text)
        feedback = step_info["feedback"]
        attempts.append(_attempt(feedback, reward))
        if feedback.success:
            first_text = text
            break  # the conversation has nothing left to discover
        history.append((text, template.format(feedback=feedback.text)))
    return UnitResult(
        "retries",
        task_id,
        task_index,
        seed,
        spec.budget,
        attempts,
        wall_s=time.monotonic() - start,
        first_success_text=first_text,
        extra={
            "max_attempts_dropped": most_dropped,
            "max_feedback_dropped": most_feedback_dropped,
            "max_prompt_tokens": max_tokens,
        },
    )


def _attempt(feedback: Any, reward: float | None) -> Attempt:
    if feedback is None:
        return Attempt(False, "format_error", reward)
    return Attempt(bool(feedback.success), str(feedback.verdict), None if reward is None else float(reward))


def sdpo_config(spec: DiscoverySpec, seed: int, output_dir: str):
    """The test-time SDPO config: one group of G attempts on the one question per step."""
    from ...config import SDPOConfig

    values: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": 1,  # set below, once the batch shape is known
        "per_device_train_batch_size": spec.group_size,
        "num_generations": spec.group_size,
        "max_completion_length": spec.max_completion_length,
        "max_prompt_length": None,  # a hard question's statement must never be cut
        "temperature": spec.temperature,
        "learning_rate": spec.learning_rate,
        # Constant: what step s does must not depend on how large the budget is.
        "lr_scheduler_type": "constant",
        "seed": seed,
        "full_logit_distillation": True,
        "distillation_topk": spec.topk,
        "distillation_alpha": 1.0,  # reverse KL(student ‖ teacher)
        "teacher_regularization": "ema",
        "include_environment_feedback": True,
        "shuffle_dataset": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "env_kwargs": dict(spec.env_kwargs),
    }
    known = {f.name for f in dataclasses.fields(SDPOConfig)}
    unknown = sorted(set(spec.sdpo_overrides) - known)
    if unknown:
        raise ValueError(f"unknown SDPOConfig field(s): {', '.join(unknown)}")
    values.update(spec.sdpo_overrides)
    args = SDPOConfig(**values)
    # Enough optimizer steps to generate the budget, whatever the overrides do to the batch
    # shape (gradient accumulation, num_iterations reusing a generation batch).
    per_step = (
        args.generation_batch_size
        * args.gradient_accumulation_steps
        / (args.steps_per_generation * args.num_iterations)
    )
    args.max_steps = max(1, math.ceil(spec.budget / per_step))
    return args


def run_sdpo(task_index: int, task_id: str, seed: int, spec: DiscoverySpec) -> UnitResult:
    """Test-time SDPO from the initial weights on one question; attempts recorded in order."""
    from transformers import PrinterCallback, TrainerCallback

    from ...models.resolve import resolve_model
    from ...rollout.task_rows import index_dataset
    from ...trainers.sdpo import SDPOTrainer

    class Recorder(SDPOTrainer):
        """Records every rollout's outcome where the trainer scores it (before the loss)."""

        attempts: list[Attempt]
        first_text: str | None = None

        def reward(self, rows, prompts, completions_text, rollouts, mode):
            if mode == "train":
                for text, rollout in zip(completions_text, rollouts):
                    self.attempts.append(_attempt(rollout.feedback, rollout.env_reward))
                    if self.attempts[-1].success and self.first_text is None:
                        self.first_text = text
            return super().reward(rows, prompts, completions_text, rollouts, mode)

    class StopWhenFound(TrainerCallback):
        def __init__(self, trainer: Recorder) -> None:
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            attempts = self.trainer.attempts
            found = first_success_index([a.success for a in attempts], spec.budget) is not None
            if (found and spec.stop_at_first_success) or len(attempts) >= spec.budget:
                control.should_training_stop = True

    start = time.monotonic()
    model, tokenizer = resolve_model(spec.model)  # fresh initial weights for every question × seed
    with tempfile.TemporaryDirectory(prefix="sdpo-discover-") as tmp:
        args = sdpo_config(spec, seed, tmp)
        trainer = Recorder(
            model=model,
            args=args,
            env=spec.env,
            # The trainer cycles through this as often as max_steps needs.
            train_dataset=index_dataset([task_index] * (args.generation_batch_size // args.num_generations)),
            processing_class=tokenizer,
        )
        trainer.attempts = []
        trainer.remove_callback(PrinterCallback)  # one line per unit is printed by the caller
        trainer.add_callback(StopWhenFound(trainer))
        trainer.train()
    steps = [
        {k: v for k, v in record.items() if k in _STEP_METRICS}
        for record in trainer.state.log_history
        if "success_rate" in record
    ]
    return UnitResult(
        "sdpo",
        task_id,
        task_index,
        seed,
        spec.budget,
        trainer.attempts[: spec.budget],
        wall_s=time.monotonic() - start,
        first_success_text=trainer.first_text,
        extra={"steps": steps},
    )


_STEP_METRICS = {
    "step",
    "success_rate",
    "distillation_loss",
    "self_distillation/teacher_student_kl",
    "completions/mean_length",
    "learning_rate",
}


# ------------------------------------------------------------------------------ the run


def _slug(task_index: int, task_id: str) -> str:
    return f"{task_index}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', task_id)}"[:80]


def run_discovery(
    spec: DiscoverySpec,
    tasks: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    *,
    methods: Sequence[str] = METHODS,
    command: str = "",
    warm_start_info: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every method × question × seed, then ``summary.json``, the PNG and ``report.md``.

    Each unit is saved under ``units/<method>/`` as it finishes; a rerun with the same
    settings reuses it, so an interrupted run resumes where it stopped.
    """
    from sdpo_envs import make_env_factory

    from .report import write_report

    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown method(s) {bad}; choose from {METHODS}")
    if not seeds:
        raise ValueError("give at least one seed")
    factory = make_env_factory(spec.env, **spec.env_kwargs)
    env = factory()
    if "retries" in methods and getattr(env, "max_turns", 1) > 1:
        raise ValueError(
            f"the retries baseline needs a single-turn env; {spec.env} has max_turns={env.max_turns}"
        )
    questions = resolve_tasks(env, tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = spec.key()
    initial: tuple[Any, Any] | None = None  # the baselines share one copy of the initial model
    units: list[UnitResult] = []
    for task_index, task_id in questions:
        for seed in seeds:
            for method in methods:
                path = out_dir / "units" / method / f"{_slug(task_index, task_id)}-s{seed}.json"
                unit = _load_unit(path, key)
                if unit is None:
                    if method == "sdpo":
                        unit = run_sdpo(task_index, task_id, seed, spec)
                    else:
                        if initial is None:
                            initial = _load_initial(spec.model)
                        model, tokenizer = initial
                        if method == "best_of_k":
                            unit = run_best_of_k(model, tokenizer, factory, task_index, task_id, seed, spec)
                        else:
                            unit = run_retries(model, tokenizer, env, task_index, task_id, seed, spec)
                    unit.spec_key = key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(unit.to_dict(), indent=2, default=float))
                    reused = ""
                else:
                    reused = " (reused)"
                found = unit.first_success
                log(
                    f"[discover] {task_id} seed {seed} {method}: "
                    + (f"first success at attempt {found}" if found else f"none in {spec.budget}")
                    + f", {len(unit.attempts)} attempts, {unit.wall_s:.1f}s{reused}"
                )
                units.append(unit)
    summary = {
        "command": command,
        "spec": dataclasses.asdict(spec),
        "spec_key": key,
        "methods": list(methods),
        "seeds": list(seeds),
        "questions": [{"index": i, "task_id": t} for i, t in questions],
        "warm_start": warm_start_info,
        "curves": discovery_curves(units, spec.budget),
        "units": [u.to_dict() for u in units],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    write_report(out_dir, summary, units)
    return summary


def _load_unit(path: Path, key: str) -> UnitResult | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return UnitResult.from_dict(data) if data.get("spec_key") == key else None


def _load_initial(name: str) -> tuple[Any, Any]:
    from ...models.resolve import resolve_model

    model, tokenizer = resolve_model(name)
    model.eval()
    return model, tokenizer
