"""Trainer callbacks for jobs: JSONL metrics, held-out evaluation at intervals, and the
terminal's progress bar."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from ..rollout.backends import engine_view
from ..rollout.generation import sampling_settings
from .eval import EvalResult, evaluate_env


class JsonlMetricsCallback(TrainerCallback):
    """Append every log record (with step, wall time and generations so far) to a JSONL file."""

    def __init__(self, path: str | Path, generations_per_step: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.generations_per_step = generations_per_step
        self.start = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.write(self.stamp(state, logs))

    def stamp(self, state, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": state.global_step,
            "wall_s": round(time.monotonic() - self.start, 3),
            "generations": state.global_step * self.generations_per_step,
            **record,
        }


class HeldOutEvalCallback(TrainerCallback):
    """Evaluate pass@k on held-out tasks before training and every ``every`` steps.

    ``initial``: the record of an evaluation of the very same starting weights with the same
    settings (another run of a comparison), logged at step 0 instead of evaluating again.
    """

    def __init__(
        self,
        env_factory: Callable[[], Any],
        indices: Sequence[int],
        *,
        every: int,
        eval_kwargs: dict[str, Any],
        initial: dict[str, Any] | None = None,
    ) -> None:
        self.initial = initial
        self.env_factory = env_factory
        self.indices = list(indices)
        self.every = every
        self.eval_kwargs = eval_kwargs
        self.trainer: Any = None
        self.history: list[dict[str, Any]] = []

    def run_eval(self, state) -> EvalResult:
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        kwargs = dict(self.eval_kwargs)
        kwargs.setdefault("executor", trainer.agent.executor)  # judged where training judges
        settings = sampling_settings(
            kwargs.get("temperature", 1.0),
            **trainer.args.engine_fields(),
            max_completion_length=kwargs.get("max_completion_length"),
        )
        view = engine_view(trainer.generator, settings)  # the trainer's engine, if it has one
        if view is not None:
            kwargs["generator"] = view
        result = evaluate_env(model, trainer.tokenizer, self.env_factory, self.indices, **kwargs)
        model.train(was_training)
        record = {f"heldout/{k}": v for k, v in result.to_dict().items() if not isinstance(v, (list, dict))}
        record.update({f"heldout/verdict/{k}": v for k, v in result.verdicts.items()})
        for k in result.ks:
            record[f"heldout/pass@{k}_ci_low"], record[f"heldout/pass@{k}_ci_high"] = result.ci[k]
        self.history.append({"step": state.global_step, **record})
        trainer.log(record)  # reaches the progress bar, TensorBoard and (through on_log) the JSONL file
        return result

    def on_train_begin(self, args, state, control, **kwargs):
        if self.indices and state.global_step == 0:
            if self.initial is None:
                self.run_eval(state)
            else:
                record = {k: v for k, v in self.initial.items() if k != "step"}
                self.history.append({"step": 0, **record})
                self.trainer.log(record)

    def on_step_end(self, args, state, control, **kwargs):
        if (
            self.indices
            and self.every
            and state.global_step % self.every == 0
            and state.global_step < state.max_steps
        ):
            self.run_eval(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.indices and (not self.history or self.history[-1]["step"] != state.global_step):
            self.run_eval(state)


# What the bar shows of a step's log record: (key in the record, label), the rest is in metrics.jsonl.
PROGRESS_FIELDS = (
    ("reward", "reward"),
    ("success_rate", "pass"),
    ("loss", "loss"),
    ("heldout/pass@1", "held-out pass@1"),
)


class TrainProgressCallback(TrainerCallback):
    """One progress bar on the terminal: step/total, elapsed and ETA, and the few numbers that
    matter (reward, pass rate, loss, the last held-out pass@1); every number of every step
    goes to ``metrics.jsonl`` (``JsonlMetricsCallback``), not here."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.shown: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            # Added only when the job shows progress: an inherited TQDM_DISABLE must not hide it.
            self.bar = tqdm(
                total=state.max_steps, desc="train", unit="step", dynamic_ncols=True, disable=False
            )
            self.bar.update(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        for key, label in PROGRESS_FIELDS:
            if isinstance(logs.get(key), (int, float)):
                self.shown[label] = f"{logs[key]:.3g}"
        self.bar.set_postfix(self.shown, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
