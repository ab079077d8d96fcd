"""A training job on an environment: the shared core of ``sdpo train`` and ``sdpo compare``."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PrinterCallback

from sdpo_envs import make_env_factory

from ..config import GRPOConfig, SDPOConfig, check_field_names
from ..models.resolve import resolve_model
from ..rollout.task_rows import index_dataset, split_indices
from ..trainers.grpo import GRPOTrainer
from ..trainers.sdpo import SDPOTrainer
from .callbacks import HeldOutEvalCallback, JsonlMetricsCallback

ALGORITHMS = ("sdpo", "grpo", "dapo", "dr_grpo")
# What each baseline name means on the shared GRPO path.
ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    "sdpo": {},
    "grpo": {"loss_type": "grpo"},
    "dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
}


MODEL_HELP = "local path, cached hub name, or alias (tiny, smollm2-135m)"


@dataclass
class JobSpec:
    """One training run on an environment with held-out evaluation (``sdpo train``; the runs
    of ``sdpo compare``). Field help is the command line's."""

    env: str = field(
        metadata={
            "help": "environment id (sdpo/Math-v0) or another library's env as <standard>:<target> "
            "(openenv:http://host:port, trl:module:Class; README, Environments from other libraries)"
        }
    )
    model: str = field(default="tiny", metadata={"help": MODEL_HELP})
    algorithm: str = field(default="sdpo", metadata={"help": f"one of {', '.join(ALGORITHMS)}"})
    output_dir: str = "runs/job"
    steps: int = field(default=20, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "completions per optimizer step"})
    num_generations: int = field(default=4, metadata={"help": "completions per prompt (group size)"})
    max_completion_length: int = 128
    learning_rate: float = 1e-5
    seed: int = 0
    eval_every: int = field(
        default=5, metadata={"help": "held-out evaluation interval in steps (0: start/end only)"}
    )
    eval_tasks: int = field(default=32, metadata={"help": "held-out tasks"})
    eval_samples: int = field(default=4, metadata={"help": "samples per held-out task (n of pass@k)"})
    eval_temperature: float = 1.0
    quiet: bool = field(default=False, metadata={"help": "no progress bars or per-step logs on the terminal"})
    checkpoints: bool = field(
        default=True, metadata={"help": "save a resumable checkpoint (weights + optimizer) halfway"}
    )
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # any SDPOConfig/GRPOConfig field

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        for name in ("steps", "batch_size", "num_generations", "max_completion_length", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_tasks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def config_for(spec: JobSpec):
    """The trainer config of a job: presets, then the job's shape, then user overrides."""

    cls = SDPOConfig if spec.algorithm == "sdpo" else GRPOConfig
    values: dict[str, Any] = {
        "output_dir": spec.output_dir,
        "max_steps": spec.steps,
        "per_device_train_batch_size": spec.batch_size,
        "num_generations": spec.num_generations,
        "max_completion_length": spec.max_completion_length,
        "learning_rate": spec.learning_rate,
        "seed": spec.seed,
        "logging_steps": 1,
        "save_strategy": "steps" if spec.checkpoints else "no",
        "save_steps": max(1, spec.steps // 2),
        "save_total_limit": 2,
        # Checkpointing costs no measurable step time here (generation dominates; completions are
        # short) and keeps a smollm2 step's activations out of the peak: 4.74 -> 3.71 GB.
        "gradient_checkpointing": True,
        "report_to": _tensorboard_if_available(),
        "disable_tqdm": spec.quiet,
        "env_kwargs": dict(spec.env_kwargs),
        **ALGORITHM_PRESETS[spec.algorithm],
    }
    if spec.algorithm == "sdpo":
        values["include_environment_feedback"] = True
    check_field_names(cls, spec.overrides)
    values.update(spec.overrides)
    return cls(**values)


def _tensorboard_if_available() -> list[str]:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return []
    return ["tensorboard"]


def run_job(
    spec: JobSpec, *, model: Any = None, tokenizer: Any = None, initial_eval: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train with periodic held-out evaluation; returns a summary and writes ``metrics.jsonl``.

    ``initial_eval``: the step-0 held-out record of an earlier job that started from the same
    weights with the same seed and evaluation settings (reused instead of re-evaluated).
    """

    args = config_for(spec)
    factory = make_env_factory(spec.env, **spec.env_kwargs)
    probe = factory()  # a wrong env id, argument or dataset fails here, before the model loads
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    if model is None:
        model, tokenizer = resolve_model(spec.model)
    train_idx, eval_idx = split_indices(probe, spec.eval_tasks)
    metrics = JsonlMetricsCallback(out / "metrics.jsonl", spec.batch_size)
    evaluator = HeldOutEvalCallback(
        factory,
        eval_idx,
        every=spec.eval_every,
        eval_kwargs={
            "n": spec.eval_samples,
            "ks": sorted({1, spec.eval_samples}),
            "temperature": spec.eval_temperature,
            "max_completion_length": spec.max_completion_length,
            "seed": spec.seed,
            "progress": not spec.quiet,
        },
        initial=initial_eval,
    )
    trainer_cls = SDPOTrainer if spec.algorithm == "sdpo" else GRPOTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        env=spec.env,
        train_dataset=index_dataset(train_idx),
        processing_class=tokenizer,
        callbacks=[metrics, evaluator],
    )
    evaluator.trainer = trainer
    if spec.quiet:
        trainer.remove_callback(PrinterCallback)  # disable_tqdm's fallback prints every log
    try:
        trainer.train()
        trainer.save_model(str(out / "final"))
    finally:
        trainer.generator.close()  # a vLLM engine and its KV cache go with the run
        release_run_memory(trainer)
    del trainer  # whatever reference cycles are left go in this collection, not the next run's
    gc.collect()
    _trim_malloc()
    summary = {"spec": dataclasses.asdict(spec), "heldout": evaluator.history}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def release_run_memory(trainer: Any) -> None:
    """Give a finished run's optimizer state, teacher and gradients back before the next run.

    ``sdpo compare`` trains its runs one after another in one process. The accelerator keeps
    the optimizer (Adam moments: twice the weights) and the callbacks keep the trainer in a
    reference cycle, so without this a run's state lived on into the next; glibc then keeps
    the freed arenas mapped unless asked to trim.
    """
    trainer.accelerator.free_memory()  # its lists of prepared models, optimizers, schedulers
    trainer.optimizer = trainer.lr_scheduler = None
    if hasattr(trainer, "teacher"):
        trainer.teacher = None
    for callback in trainer.callback_handler.callbacks:
        if getattr(callback, "trainer", None) is trainer:
            callback.trainer = None
    trainer.model.zero_grad(set_to_none=True)
    gc.collect()
    _trim_malloc()


def _trim_malloc() -> None:
    # Not glibc (macOS, musl): the allocator keeps its own policy.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
