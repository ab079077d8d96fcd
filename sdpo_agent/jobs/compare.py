"""``sdpo compare``: several algorithms × seeds on the same env, prompts and budget.

Every run starts from the same weights (optionally a cached warm start), trains on the same
task split with the same seeds and generation budget, and is evaluated on the same
held-out tasks. The curves and the summary go to ``report.md`` and PNG plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .report import write_report
from .train import JobSpec, run_job

TEACHER_SIGNAL_KEY = "self_distillation/reprompt_sample_fraction"


@dataclass
class RunCurve:
    algorithm: str
    seed: int
    steps: list[int]
    generations: list[int]
    wall_s: list[float]
    pass1: list[float]
    mean_length: float
    judge_error_rate: float
    train_steps: list[int] = dataclasses.field(default_factory=list)
    step_lengths: list[float] = dataclasses.field(default_factory=list)  # mean completion tokens
    # SDPO only: the share of the step's rows whose teacher saw a reprompt (feedback or a
    # successful sibling), i.e. the rows that carried a credit-assignment signal.
    teacher_signal: list[float] = dataclasses.field(default_factory=list)


def load_curve(run_dir: Path, algorithm: str, seed: int) -> RunCurve:
    """Held-out points and per-step training statistics of one run, from its metrics.jsonl."""
    steps, gens, wall, pass1, lengths, errors = [], [], [], [], [], []
    train_steps, teacher_signal = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "heldout/pass@1" in record:
            steps.append(record["step"])
            gens.append(record["generations"])
            wall.append(record["wall_s"])
            pass1.append(record["heldout/pass@1"])
        if "completions/mean_length" in record:
            train_steps.append(record["step"])
            lengths.append(record["completions/mean_length"])
        if TEACHER_SIGNAL_KEY in record:
            teacher_signal.append(record[TEACHER_SIGNAL_KEY])
        if "judge_error_rate" in record:
            errors.append(record["judge_error_rate"])
    return RunCurve(
        algorithm,
        seed,
        steps,
        gens,
        wall,
        pass1,
        float(np.mean(lengths)) if lengths else math.nan,
        float(np.mean(errors)) if errors else math.nan,
        train_steps,
        lengths,
        teacher_signal,
    )


def generations_to_reach(curve: RunCurve, target: float) -> int | None:
    for gens, value in zip(curve.generations, curve.pass1):
        if value >= target:
            return gens
    return None


def summarise(curves: list[RunCurve], baseline: str) -> dict[str, dict[str, Any]]:
    """Per algorithm: final/best held-out pass@1 (mean, std over seeds), generations to reach
    the baseline's mean final accuracy, mean response length, judge-error rate."""
    by_algo: dict[str, list[RunCurve]] = {}
    for curve in curves:
        by_algo.setdefault(curve.algorithm, []).append(curve)
    base_final = (
        float(np.mean([c.pass1[-1] for c in by_algo.get(baseline, [])])) if baseline in by_algo else math.nan
    )
    table = {}
    for algo, runs in by_algo.items():
        finals = [c.pass1[-1] for c in runs]
        bests = [max(c.pass1) for c in runs]
        reach = [generations_to_reach(c, base_final) for c in runs] if not math.isnan(base_final) else []
        reached = [r for r in reach if r is not None]
        table[algo] = {
            "seeds": len(runs),
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            "best_mean": float(np.mean(bests)),
            "best_std": float(np.std(bests, ddof=1)) if len(bests) > 1 else 0.0,
            "gens_to_baseline_final": float(np.median(reached)) if reached else None,
            "runs_reaching_baseline": f"{len(reached)}/{len(runs)}",
            "mean_length": float(np.nanmean([c.mean_length for c in runs])),
            "judge_error_rate": float(np.nanmean([c.judge_error_rate for c in runs])),
            "teacher_signal_share": (
                float(np.mean([np.mean(c.teacher_signal) for c in runs if c.teacher_signal]))
                if any(c.teacher_signal for c in runs)
                else None
            ),
        }
    return {"baseline": baseline, "baseline_final": base_final, "algorithms": table}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _eta(durations: list[float], remaining: int) -> str:
    """ ", about N min left" from the mean of the runs trained so far."""
    return f" (about {_minutes(np.mean(durations) * remaining)} left)" if durations else ""


def run_comparison(
    base: JobSpec,
    algorithms: list[str],
    seeds: list[int],
    out_dir: Path,
    *,
    command: str,
    warm_start_info: dict[str, Any] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run every (algorithm, seed), then write summary.json, plots and report.md."""

    out_dir.mkdir(parents=True, exist_ok=True)
    curves = []
    total, trained, started = len(seeds) * len(algorithms), [], time.monotonic()
    for seed in seeds:
        initial = None  # every algorithm of a seed starts from the same weights: evaluate them once
        for algorithm in algorithms:
            run_dir = out_dir / "runs" / f"{algorithm}-s{seed}"
            count = f"[compare {len(curves) + 1}/{total}]"
            if (run_dir / "summary.json").exists():
                log(f"{count} {algorithm} seed {seed}: reusing finished run in {run_dir}")
            else:
                log(
                    f"{count} {algorithm} seed {seed}: training -> {run_dir}{_eta(trained, total - len(curves))}"
                )
                if (run_dir / "metrics.jsonl").exists():
                    (run_dir / "metrics.jsonl").unlink()  # an interrupted run restarts cleanly
                begun = time.monotonic()
                # No halfway checkpoints: an interrupted run restarts from scratch (above), so
                # they would only cost disk (optimizer state: twice the weights) and memory.
                run_job(
                    dataclasses.replace(
                        base, algorithm=algorithm, seed=seed, output_dir=str(run_dir), checkpoints=False
                    ),
                    initial_eval=initial,
                )
                trained.append(time.monotonic() - begun)
            curves.append(load_curve(run_dir, algorithm, seed))
            history = json.loads((run_dir / "summary.json").read_text())["heldout"]
            if initial is None and history and history[0]["step"] == 0:
                initial = history[0]
    log(f"[compare] {total} runs done in {_minutes(time.monotonic() - started)}")
    baseline = next((a for a in algorithms if a != "sdpo"), algorithms[0])
    summary = summarise(curves, baseline)
    summary.update(
        {
            "command": command,
            "job": dataclasses.asdict(base),
            "algorithms_run": algorithms,
            "seeds": seeds,
            "warm_start": warm_start_info,
            "curves": [dataclasses.asdict(c) for c in curves],
        }
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    write_report(out_dir, summary, curves)
    return summary


def compare(
    env: str,
    model: str = "tiny",
    *,
    algorithms: Sequence[str] = ("sdpo", "grpo"),
    seeds: Sequence[int] = (0, 1),
    output_dir: str | Path = "runs/compare",
    **job_fields: Any,
) -> dict[str, Any]:
    """SDPO against RLVR baselines from Python, as ``sdpo compare`` runs it: every algorithm
    with every seed from the same weights, on the same tasks and budget; ``job_fields`` are
    ``JobSpec``'s (``steps``, ``batch_size``, ``eval_tasks``, ``overrides``, ...). Returns the
    summary; ``report.md`` and the plots land in ``output_dir``.

    >>> summary = compare(
    ...     "sdpo/MCQ-v0", "tiny", algorithms=["sdpo", "grpo"], seeds=[0], output_dir=tmp_path,
    ...     steps=1, batch_size=4, max_completion_length=8, eval_tasks=2, eval_samples=1, quiet=True,
    ... )
    >>> sorted(summary["algorithms"]), (tmp_path / "report.md").exists()
    (['grpo', 'sdpo'], True)
    """
    base = JobSpec(env=env, model=model, **job_fields)
    log = (lambda message: None) if base.quiet else print
    command = f"compare({env!r}, {model!r}, algorithms={list(algorithms)}, seeds={list(seeds)})"
    return run_comparison(base, list(algorithms), list(seeds), Path(output_dir), command=command, log=log)
