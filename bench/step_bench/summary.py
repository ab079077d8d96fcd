"""The parent side: the machine, one child run, and the per-case summary with its ratios."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from .settings import MARKER, PHASES, ROOT, STEP, STEP_CPU


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
    cmd = [sys.executable, str(ROOT / "bench" / "trainer_step.py"), "--child", json.dumps(spec)]
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
