"""Where the time of each optimizer step goes: per-phase wall and CPU seconds, read through
public hooks only.

Our trainers report their own phases (``sdpo_agent/rollout/phase_times.py``) to a callback's
``on_step_phases``. TRL's trainers report none, so for them the probe uses what any user can
attach: forward hooks on the student and teacher modules, a wrapper on the model's public
``generate`` and on ``accelerator.backward``. Their batch preparation and loss arithmetic outside
the forwards cannot be told apart that way and stay in "other". The optimizer step and what
follows it come from the ``transformers`` callback events, for both.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from transformers import TrainerCallback

Clock = tuple[float, float]


def now() -> Clock:
    return time.perf_counter(), time.process_time()


class StepTimer(TrainerCallback):
    """One record per optimizer step: its wall and CPU seconds and their split by phase.

    Added after the trainer's own callbacks, so the teacher update is inside the step.
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.reported: dict[str, tuple[float, float]] = {}  # ours, through on_step_phases
        self.probed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # TRL, through the probe
        self._begin: Clock = (0.0, 0.0)
        self._optimizer: Clock = (0.0, 0.0)

    def add(self, bucket: str, start: Clock, end: Clock) -> None:
        cell = self.probed[bucket]
        cell[0] += end[0] - start[0]
        cell[1] += end[1] - start[1]

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.probed.clear()
        self.reported = {}
        self._begin = now()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._optimizer = now()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        end = now()
        self.add("optimizer", self._optimizer, end)
        self._optimizer = end

    def on_step_phases(self, args: Any, state: Any, control: Any, phases: Any = None, **kwargs: Any) -> None:
        self.reported = dict(phases or {})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        end = now()
        self.add("post_step", self._optimizer, end)
        total = (end[0] - self._begin[0], end[1] - self._begin[1])
        self.steps.append(
            {
                "begin": self._begin[0],
                "end": end[0],
                "seconds": total[0],
                "cpu_seconds": total[1],
                "phases": self.breakdown(total),
            }
        )

    def breakdown(self, total: Clock) -> dict[str, list[float]]:
        """The step's seconds by the benchmark's phases, [wall, CPU] each; "other" is the rest."""
        out: dict[str, list[float]] = {}
        for i in (0, 1):

            def ours(phase: str, i: int = i) -> float:
                return self.reported[phase][i] if phase in self.reported else 0.0

            def probed(bucket: str, i: int = i) -> float:
                return self.probed[bucket][i] if bucket in self.probed else 0.0

            forwards = ours("student_forward") + ours("teacher_forward")
            parts = {
                "generate": ours("generate") + probed("generate"),
                "prepare_other": max(0.0, ours("prepare") - ours("generate")),
                "student_fwd": ours("student_forward") + probed("student_fwd"),
                "teacher_fwd": ours("teacher_forward") + probed("teacher_fwd"),
                "loss_other": max(0.0, ours("loss") - forwards),
                "backward": max(0.0, ours("training_step") - ours("prepare") - ours("loss"))
                + probed("backward"),
                "optimizer": probed("optimizer"),
                "post_step": probed("post_step"),
            }
            parts["other"] = total[i] - sum(parts.values())
            for name, value in parts.items():
                out.setdefault(name, [0.0, 0.0])[i] = value
        return out


class TrlProbe:
    """Forward hooks and public-method wrappers that time a TRL trainer's step into ``timer``."""

    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer
        self.generating = False

    def time_method(self, owner: Any, name: str, bucket: str, *, generating: bool = False) -> None:
        method = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.generating = generating
            start = now()
            try:
                return method(*args, **kwargs)
            finally:
                self.timer.add(bucket, start, now())
                self.generating = False

        setattr(owner, name, timed)

    def hook_forward(self, module: Any, bucket: str) -> None:
        starts: list[Clock] = []

        def pre(_module: Any, _args: Any) -> None:
            starts.append(now())

        def post(_module: Any, _args: Any, _out: Any) -> None:
            start = starts.pop()
            if not self.generating:  # generate's own forwards count as generation
                self.timer.add(bucket, start, now())

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def instrument(trainer: Any, kind: str) -> StepTimer:
    timer = StepTimer()
    if kind.startswith("trl"):
        probe = TrlProbe(timer)
        student = trainer.accelerator.unwrap_model(trainer.model)
        probe.time_method(student, "generate", "generate", generating=True)
        probe.hook_forward(student, "student_fwd")
        if kind.startswith("trl-sdpo"):
            probe.hook_forward(trainer.accelerator.unwrap_model(trainer.teacher_model), "teacher_fwd")
        probe.time_method(trainer.accelerator, "backward", "backward")
    trainer.add_callback(timer)
    return timer
