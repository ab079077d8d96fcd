"""Plots and the Markdown report of a comparison. The text states only what the numbers show."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(curves, x_attr: str, xlabel: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    algorithms = sorted({c.algorithm for c in curves})
    for color, algo in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], algorithms):
        runs = [c for c in curves if c.algorithm == algo]
        for i, run in enumerate(runs):
            ax.plot(
                getattr(run, x_attr),
                run.pass1,
                color=color,
                alpha=0.35,
                lw=1,
                label=None if i else f"{algo} (each seed)",
            )
        width = min(len(r.pass1) for r in runs)
        xs = np.mean([getattr(r, x_attr)[:width] for r in runs], axis=0)
        ys = np.array([r.pass1[:width] for r in runs])
        ax.plot(xs, ys.mean(axis=0), color=color, lw=2.2, label=f"{algo} (mean of {len(runs)})")
        if len(runs) > 1:
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out pass@1")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _per_step_band(ax, runs, values_attr: str, color: str, label: str) -> None:
    """Mean over seeds per training step, with the min-max band across seeds."""
    runs = [r for r in runs if getattr(r, values_attr)]
    if not runs:
        return
    width = min(len(getattr(r, values_attr)) for r in runs)
    xs = runs[0].train_steps[:width]
    ys = np.array([getattr(r, values_attr)[:width] for r in runs])
    ax.plot(xs, ys.mean(axis=0), color=color, lw=2, label=f"{label} (mean of {len(runs)})")
    if len(runs) > 1:
        ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.15)


def _plot_training_dynamics(curves, path: Path) -> None:
    """Left: mean response length per step (the paper's claim: SDPO answers get shorter).
    Right: SDPO's share of rows whose teacher had a signal (feedback or a successful sibling)."""
    plt = _pyplot()
    fig, (length_ax, signal_ax) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, algo in zip(colors, sorted({c.algorithm for c in curves})):
        runs = [c for c in curves if c.algorithm == algo]
        _per_step_band(length_ax, runs, "step_lengths", color, algo)
        _per_step_band(signal_ax, runs, "teacher_signal", color, algo)
    length_ax.set_ylabel("mean response length (tokens)")
    signal_ax.set_ylabel("rows with a teacher signal")
    signal_ax.set_ylim(-0.02, 1.02)
    if not any(c.teacher_signal for c in curves):
        signal_ax.text(0.5, 0.5, "no SDPO run", ha="center", va="center", transform=signal_ax.transAxes)
    for ax in (length_ax, signal_ax):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def verdict_sentence(summary: dict[str, Any]) -> str:
    """A conclusion only where the seed spread separates the algorithms."""
    table = summary["algorithms"]
    if "sdpo" not in table or summary["baseline"] not in table or summary["baseline"] == "sdpo":
        return "Only one algorithm was run; there is nothing to compare."
    sdpo, base = table["sdpo"], table[summary["baseline"]]
    if sdpo["seeds"] < 2 or base["seeds"] < 2:
        return (
            "With a single seed per algorithm the spread over seeds is unknown, so no difference is "
            "claimed; run more seeds (--seeds) to compare."
        )
    gap = sdpo["final_mean"] - base["final_mean"]
    noise = sdpo["final_std"] + base["final_std"]
    if abs(gap) <= noise:
        return (
            f"The final held-out accuracies differ by {gap:+.3f}, within the combined seed spread "
            f"({noise:.3f}): this run does not show a difference between SDPO and {summary['baseline']}."
        )
    better = "SDPO" if gap > 0 else summary["baseline"]
    return (
        f"{better} ends higher by {abs(gap):.3f}, more than the combined seed spread ({noise:.3f}); "
        "with this few seeds treat it as an indication, not a significance test."
    )


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def write_report(out_dir: Path, summary: dict[str, Any], curves) -> None:
    _plot(curves, "generations", "generations (completions sampled)", out_dir / "heldout_vs_generations.png")
    _plot(curves, "wall_s", "wall-clock seconds", out_dir / "heldout_vs_wallclock.png")
    _plot_training_dynamics(curves, out_dir / "training_dynamics.png")
    job = summary["job"]
    lines = [
        f"# SDPO vs {summary['baseline'].upper()} on `{job['env']}`",
        "",
        f"Model `{job['model']}`; seeds {summary['seeds']}; {job['steps']} steps × {job['batch_size']} completions "
        f"({job['num_generations']} per prompt); held-out: {job['eval_tasks']} tasks × {job['eval_samples']} samples "
        f"every {job['eval_every']} steps. Every run uses the same task split, seeds and generation budget.",
        "",
    ]
    if summary.get("warm_start"):
        ws = summary["warm_start"]
        lines += [
            f"All runs start from the same warm-started checkpoint ({ws.get('demonstrations')} oracle "
            f"demonstrations, {ws.get('epochs')} epochs; `{ws.get('path')}`).",
            "",
        ]
    lines += [
        "| algorithm | seeds | final pass@1 (mean ± std) | best pass@1 | generations to baseline's final "
        "| mean response length | rows with teacher signal | judge-error rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for algo, row in summary["algorithms"].items():
        reach = row["gens_to_baseline_final"]
        reach_text = (
            f"{reach:.0f} ({row['runs_reaching_baseline']} runs)"
            if reach is not None
            else f"not reached ({row['runs_reaching_baseline']} runs)"
        )
        lines.append(
            f"| {algo} | {row['seeds']} | {_fmt(row['final_mean'], row['final_std'])} | "
            f"{_fmt(row['best_mean'], row['best_std'])} | {reach_text} | {row['mean_length']:.1f} | "
            f"{_share(row.get('teacher_signal_share'))} | {row['judge_error_rate']:.3f} |"
        )
    base_final = summary["baseline_final"]
    lines += [
        "",
        f"Baseline ({summary['baseline']}) mean final held-out pass@1: "
        f"{'n/a' if math.isnan(base_final) else f'{base_final:.3f}'}.",
        "",
        "**Reading:** " + verdict_sentence(summary),
        "",
        "![held-out pass@1 vs generations](heldout_vs_generations.png)",
        "![held-out pass@1 vs wall-clock](heldout_vs_wallclock.png)",
        "",
        "Response length per training step, and the share of SDPO's rows whose teacher had a "
        "signal (environment feedback or a successful sibling in the reprompt):",
        "",
        "![response length and teacher signal per step](training_dynamics.png)",
        "",
        "Reproduce with:",
        "",
        "```bash",
        summary["command"],
        "```",
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(lines))
