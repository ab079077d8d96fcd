"""One configuration, in its own process: build, instrument, train, measure."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .memory import RssSampler, peak_rss_bytes, rss_bytes, touch_weights
from .phases import instrument
from .settings import PHASES
from .workload import build_trainer


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
        rss_before = rss_bytes()
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
        "maxrss_mib": peak_rss_bytes() / 2**20,
        "rss_before_train_mib": rss_before / 2**20,
        "peak_rss_measured_mib": peak / 2**20,
        "growth_mib": (peak - rss_before) / 2**20,
        "rss_samples": len(sampler.samples),
        "weights_mib": weight_bytes / 2**20,
        "torch_threads": torch.get_num_threads(),
    }
