"""Where the time of each optimizer step goes: per-phase wall and CPU seconds."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any


class Phases:
    """Where the time of each optimizer step goes, from wrappers and forward hooks.

    Every bucket holds [wall seconds, process CPU seconds]; CPU time (all threads) is what a
    busy shared machine skews least.
    """

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.generating = False
        self.in_loss = False

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, bucket: str, start: tuple[float, float], end: tuple[float, float]) -> None:
        cell = self.acc[bucket]
        cell[0] += end[0] - start[0]
        cell[1] += end[1] - start[1]

    def wrap(self, obj: Any, name: str, bucket: str, flag: str | None = None, forward: bool = False) -> None:
        """Time ``obj.name`` into ``bucket``; ``forward``: a model forward, also split by
        whether it ran inside the loss or while preparing the batch (like ``hook_forward``)."""
        fn = getattr(obj, name)

        def wrapper(*args, **kwargs):
            if flag:
                setattr(self, flag, True)
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                end = self.now()
                self.add(bucket, start, end)
                if forward:
                    self.add(f"{bucket}@loss" if self.in_loss else f"{bucket}@prepare", start, end)
                if flag:
                    setattr(self, flag, False)

        setattr(obj, name, wrapper)

    def hook_forward(self, module: Any, bucket: str) -> None:
        starts: list[tuple[float, float]] = []

        def pre(_module, _args):
            starts.append(self.now())

        def post(_module, _args, _out):
            start, end = starts.pop(), self.now()
            if self.generating:
                return
            self.add(bucket, start, end)
            self.add(f"{bucket}@loss" if self.in_loss else f"{bucket}@prepare", start, end)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def step_breakdown(self, total: tuple[float, float]) -> dict[str, list[float]]:
        out = {}
        for i in (0, 1):

            def a(key: str, i: int = i) -> float:
                return self.acc[key][i] if key in self.acc else 0.0

            fwd_in_loss = a("student_fwd@loss") + a("teacher_fwd@loss")
            fwd_in_prepare = a("student_fwd@prepare") + a("teacher_fwd@prepare")
            parts = {
                "generate": a("generate"),
                "prepare_other": a("prepare") - a("generate") - fwd_in_prepare,
                "student_fwd": a("student_fwd"),
                "teacher_fwd": a("teacher_fwd"),
                "loss_other": a("compute_loss") - fwd_in_loss,
                "backward": a("backward"),
                "optimizer": a("optimizer"),
                "post_step": a("post_step"),
            }
            parts["other"] = total[i] - sum(parts.values())
            for name, value in parts.items():
                out.setdefault(name, [0.0, 0.0])[i] = value
        return out


def instrument(trainer, kind: str):
    from transformers import TrainerCallback

    phases = Phases()
    student = trainer.accelerator.unwrap_model(trainer.model)
    if kind.startswith("ours"):
        # The backend may not be model.generate (vLLM): time the trainer's own generation step.
        phases.wrap(trainer.generator, "generate", "generate", flag="generating")
        if kind.startswith("ours-sdpo"):
            phases.wrap(trainer.teacher, "logits", "teacher_fwd", forward=True)
    else:
        phases.wrap(student, "generate", "generate", flag="generating")
    phases.hook_forward(student, "student_fwd")
    if kind.startswith("trl-sdpo"):
        phases.hook_forward(trainer.accelerator.unwrap_model(trainer.teacher_model), "teacher_fwd")
    phases.wrap(trainer, "_prepare_inputs", "prepare")
    phases.wrap(trainer, "compute_loss", "compute_loss", flag="in_loss")
    phases.wrap(trainer.accelerator, "backward", "backward")

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []
            self._begin = self._opt = (0.0, 0.0)

        def on_step_begin(self, args, state, control, **kwargs):
            phases.acc.clear()
            self._begin = phases.now()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self._opt = phases.now()

        def on_optimizer_step(self, args, state, control, **kwargs):
            now = phases.now()
            phases.add("optimizer", self._opt, now)
            self._opt = now

        def on_step_end(self, args, state, control, **kwargs):
            end = phases.now()
            phases.add("post_step", self._opt, end)
            total = (end[0] - self._begin[0], end[1] - self._begin[1])
            self.steps.append(
                {
                    "begin": self._begin[0],
                    "end": end[0],
                    "seconds": total[0],
                    "cpu_seconds": total[1],
                    "phases": phases.step_breakdown(total),
                }
            )

    timer = StepTimer()
    trainer.add_callback(timer)  # after the trainers' own callbacks: the EMA update is inside the step
    return timer
