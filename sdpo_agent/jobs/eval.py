"""Held-out evaluation (``sdpo eval``, and during training): pass@k (unbiased estimator) with
bootstrap confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sdpo_envs import TextEnv, make_env_factory
from sdpo_envs.executors import Executor, make_executor

from ..models.resolve import resolve_model
from ..rollout.agent_loop import AgentLoop, EpisodeContext
from ..rollout.backends import sampling_generator
from ..rollout.generation import GenerationBackend, sampling_settings
from ..rollout.task_rows import reset_options
from ..rollout.task_split import split_indices
from .specs import EvalSpec


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c successes: 1 − C(n − c, k) / C(n, k).

    (Chen et al., 2021.) Exact for integers; requires k ≤ n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0):
    """Percentile bootstrap interval of the mean over tasks."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


@dataclass
class EvalResult:
    n: int
    ks: list[int]
    pass_at: dict[int, float]
    ci: dict[int, tuple[float, float]]
    per_task_successes: list[int]
    mean_length: float
    judge_error_rate: float
    verdicts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            **{f"pass@{k}": self.pass_at[k] for k in self.ks},
            **{f"pass@{k}_ci": list(self.ci[k]) for k in self.ks},
            "mean_length": self.mean_length,
            "judge_error_rate": self.judge_error_rate,
            "verdicts": self.verdicts,
            "tasks": len(self.per_task_successes),
        }


def evaluate_env(
    model: Any,
    tokenizer: Any,
    env_factory: Callable[[], TextEnv],
    indices: Sequence[int],
    *,
    n: int = 4,
    ks: Sequence[int] = (1,),
    temperature: float = 1.0,
    max_completion_length: int = 256,
    max_turns: int = 4,
    max_prompt_length: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    use_vllm: bool = False,
    generator: GenerationBackend | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> EvalResult:
    """Sample ``n`` answers per held-out task and score them with the environment.

    ``use_vllm``: sample with vLLM (one engine per model, kept for later calls); ``generator``:
    sample with this backend instead (a trainer's, so training and evaluation share an engine);
    ``progress``: a progress bar over the episodes (count, ETA); ``executor``: where env steps
    run (default this host's threads).
    """
    ks = sorted(set(ks))
    if ks[-1] > n:
        raise ValueError(f"pass@{ks[-1]} needs n >= {ks[-1]} samples per task, got n={n}")
    eos = sorted({tokenizer.eos_token_id} - {None})
    if generator is None:
        settings = sampling_settings(
            temperature,
            use_vllm=use_vllm,
            max_prompt_length=max_prompt_length,
            max_completion_length=max_completion_length,
        )
        generator = sampling_generator(model, tokenizer, settings, eos, seed=seed)
    loop = AgentLoop(
        generator,
        tokenizer,
        max_completion_length=max_completion_length,
        max_turns=max_turns,
        eos_token_ids=eos,
        executor=executor,
    )
    torch.manual_seed(seed)
    jobs = [i for i in indices for _ in range(n)]
    successes: dict[int, int] = {i: 0 for i in indices}
    lengths, errors, verdicts = [], 0, {}
    envs = [env_factory() for _ in range(min(batch_size, len(jobs)))]
    bar = tqdm(total=len(jobs), desc="held-out eval", unit="episode", disable=not progress, leave=False)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        contexts, prompt_ids = [], []
        for env, index in zip(envs, chunk):
            _, info = env.reset(options=reset_options({"task_index": index}))
            tools = None if getattr(env, "tools_in_prompt", False) else info.get("tools")
            contexts.append(EpisodeContext(env=env, messages=info["messages"], tools=tools))
            ids = tokenizer.apply_chat_template(
                info["messages"], tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            prompt_ids.append(list(ids[-max_prompt_length:] if max_prompt_length else ids))
        for index, rollout in zip(chunk, loop.run(prompt_ids, contexts)):
            feedback = rollout.feedback
            verdict = feedback.verdict if feedback else "format_error"
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            errors += verdict == "judge_error"
            successes[index] += bool(feedback and feedback.success)
            lengths.append(sum(rollout.completion_mask))
        bar.update(len(chunk))
    bar.close()
    per_task = [successes[i] for i in indices]
    pass_at, ci = {}, {}
    for k in ks:
        values = [pass_at_k(n, c, k) for c in per_task]
        pass_at[k] = float(np.mean(values))
        ci[k] = bootstrap_ci(values, seed=seed)
    return EvalResult(
        n=n,
        ks=ks,
        pass_at=pass_at,
        ci=ci,
        per_task_successes=per_task,
        mean_length=float(np.mean(lengths)) if lengths else 0.0,
        judge_error_rate=errors / max(1, len(jobs)),
        verdicts=verdicts,
    )


def run_eval(spec: EvalSpec, *, progress: bool = False) -> tuple[EvalResult, int]:
    """Evaluate ``spec.model`` on the env's held-out split; the result and the number of tasks."""
    factory = make_env_factory(spec.env, **spec.env_kwargs)
    _, held_out = split_indices(factory(), spec.tasks)  # env mistakes fail before the model loads
    executor = make_executor(spec.judge_backend, ray_address=spec.ray_address)  # so do cluster ones
    model, tokenizer = resolve_model(spec.model)
    result = evaluate_env(
        model,
        tokenizer,
        factory,
        held_out,
        n=spec.samples,
        ks=spec.ks,
        temperature=spec.temperature,
        max_completion_length=spec.max_completion_length,
        max_turns=spec.max_turns,
        seed=spec.seed,
        use_vllm=spec.use_vllm,
        progress=progress,
        executor=executor,
    )
    return result, len(held_out)
