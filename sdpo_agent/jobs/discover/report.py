"""The discovery report: attempts to first success, discovery@k curves (PNG), and a reading
that states only what the numbers show. A question a chain never solved is shown as "not
found within the budget", never imputed as a number."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .spec import METHOD_LABELS, METHODS, UnitResult

_TOLERANCE = 1e-9  # discovery values are fractions and pass@k estimates; compare with slack


def median_attempts(first_successes: Sequence[int | None]) -> float | None:
    """Median over seeds, with "not found" ordered after every attempt count (censored).

    Returns None when the median falls on a chain that found nothing: the median is then
    beyond the budget, and no number stands in for it.
    """
    ordered = sorted(first_successes, key=lambda f: (f is None, f or 0))
    n = len(ordered)
    if n == 0:
        return None
    if n % 2:
        middle = ordered[n // 2]
        return None if middle is None else float(middle)
    low, high = ordered[n // 2 - 1], ordered[n // 2]
    if low is None or high is None:
        return None
    return (low + high) / 2


def spread_text(first_successes: Sequence[int | None], budget: int) -> str:
    """min–max over seeds; a chain that found nothing makes the top end "> budget"."""
    found = sorted(f for f in first_successes if f is not None)
    if not found:
        return "—"
    top = str(found[-1]) if len(found) == len(first_successes) else f">{budget}"
    return str(found[0]) if top == str(found[0]) else f"{found[0]}–{top}"


def _median_text(value: float | None, budget: int) -> str:
    if value is None:
        return f"not found within {budget}"
    return f"{value:g}"


def attempts_rows(units: Sequence[UnitResult], budget: int) -> list[dict[str, Any]]:
    """Per question × method: the first-success index of each seed, its median and spread."""
    rows = []
    for task in dict.fromkeys(u.task_id for u in units):
        for method in METHODS:
            runs = sorted(
                (u for u in units if u.task_id == task and u.method == method), key=lambda u: u.seed
            )
            if not runs:
                continue
            firsts = [u.first_success for u in runs]
            rows.append(
                {
                    "task_id": task,
                    "method": method,
                    "seeds": [u.seed for u in runs],
                    "first_successes": firsts,
                    "median": median_attempts(firsts),
                    "spread": spread_text(firsts, budget),
                    "found": sum(f is not None for f in firsts),
                }
            )
    return rows


def first_k_reaching(curve: Sequence[float], level: float) -> int | None:
    for k, value in enumerate(curve, start=1):
        if value >= level - _TOLERANCE:
            return k
    return None


def reading(curves: dict[str, list[float]], budget: int, chains: int) -> str:
    """Compare SDPO with each baseline at the highest discovery level both reach, if any."""
    if "sdpo" not in curves:
        return "SDPO was not run, so nothing is compared with it."
    baselines = [m for m in ("best_of_k", "retries") if m in curves]
    if not baselines:
        return "No baseline was run, so nothing is compared."
    sdpo = curves["sdpo"]
    sentences = []
    for method in baselines:
        name, other = METHOD_LABELS[method], curves[method]
        final_s, final_b = sdpo[-1], other[-1]
        level = min(final_s, final_b)
        if level <= _TOLERANCE:
            if final_s <= _TOLERANCE and final_b <= _TOLERANCE:
                sentences.append(f"Neither SDPO nor {name} found a solution within {budget} attempts.")
            else:
                silent = "SDPO" if final_s <= _TOLERANCE else name
                sentences.append(
                    f"{silent} found no solution within {budget} attempts, so there is no common "
                    f"discovery level to compare with {name if silent == 'SDPO' else 'SDPO'} "
                    f"(SDPO reaches {final_s:.2f}, {name} {final_b:.2f} at k = {budget})."
                )
            continue
        k_s, k_b = first_k_reaching(sdpo, level), first_k_reaching(other, level)
        text = (
            f"SDPO and {name} both reach discovery {level:.2f} (the highest level both reach within "
            f"{budget} attempts): SDPO at k = {k_s}, {name} at k = {k_b}"
        )
        if k_s < k_b:
            text += f", so on this run SDPO needed {k_b / k_s:.1f}× fewer attempts to reach it."
        elif k_s == k_b:
            text += ", the same number of attempts."
        else:
            text += f", so on this run SDPO needed {k_s / k_b:.1f}× more attempts to reach it."
        if abs(final_s - final_b) > _TOLERANCE:
            text += f" At k = {budget}: SDPO {final_s:.2f}, {name} {final_b:.2f}."
        sentences.append(text)
    sentences.append(
        f"SDPO and retries values are fractions of {chains} chain{'s' if chains != 1 else ''} "
        f"(steps of {1 / chains:.2f}); "
        "with this few chains these are observations on this run, not a significance test."
    )
    return " ".join(sentences)


def _report_ks(budget: int, group_size: int) -> list[int]:
    ks = {1, group_size, budget}
    k = 2
    while k < budget:
        ks.add(k)
        k *= 2
    return sorted(k for k in ks if 1 <= k <= budget)


def plot_curves(curves: dict[str, dict[str, list[float]]], budget: int, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ks = np.arange(1, budget + 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, method in zip(colors, [m for m in METHODS if m in curves]):
        # Chain fractions only change at whole attempts; pass@k estimates are drawn as points joined.
        style = "default" if method == "best_of_k" else "steps-post"
        per_task = {t: c for t, c in curves[method].items() if t != "all"}
        for i, curve in enumerate(per_task.values()):
            ax.plot(
                ks,
                curve,
                color=color,
                alpha=0.3,
                lw=1,
                drawstyle=style,
                label=None if i else f"{METHOD_LABELS[method]} (each question)",
            )
        ax.plot(
            ks,
            curves[method]["all"],
            color=color,
            lw=2.2,
            drawstyle=style,
            marker="o" if budget <= 32 else None,
            ms=3,
            label=f"{METHOD_LABELS[method]} (mean over {len(per_task)} question(s))",
        )
    ax.set_xlabel("attempts k (generated completions)")
    ax.set_ylabel("discovery@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0.5, budget + 0.5)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out_dir: Path, summary: dict[str, Any], units: Sequence[UnitResult]) -> None:
    spec = summary["spec"]
    budget, curves = spec["budget"], summary["curves"]
    questions, seeds = summary["questions"], summary["seeds"]
    chains = len(questions) * len(seeds)
    title = f"{spec['env']} · {spec['model']} · {len(questions)} question(s) × {len(seeds)} seed(s)"
    plot_curves(curves, budget, out_dir / "discovery_at_k.png", title)
    names = ", ".join(f"`{q['task_id']}`" for q in questions)
    lines = [
        f"# Test-time discovery on `{spec['env']}`",
        "",
        f"Model `{spec['model']}`; {len(questions)} question(s) "
        f"({names}); seeds {seeds}; budget {budget} attempts "
        f"per question and seed; sampling temperature {spec['temperature']:g}; at most "
        f"{spec['max_completion_length']} completion tokens per attempt.",
        "",
    ]
    if summary.get("warm_start"):
        ws = summary["warm_start"]
        lines += [
            f"Every method starts from the same warm-started checkpoint ({ws.get('demonstrations')} oracle "
            f"demonstrations, {ws.get('epochs')} epochs; `{ws.get('path')}`).",
            "",
        ]
    descriptions = {
        "sdpo": f"test-time SDPO from the initial weights: {spec['group_size']} attempts per step, reverse-KL "
        f"distillation on the top-{spec['topk']} logits towards the feedback-conditioned EMA teacher, "
        f"learning rate {spec['learning_rate']:g}"
        + ("; stops at the first success." if spec["stop_at_first_success"] else "; runs the whole budget."),
        "best_of_k": f"{spec['best_of_samples'] or budget} i.i.d. samples per seed from the initial model; "
        "discovery@k is the unbiased pass@k over the pooled samples of a question; its attempts "
        "to first success are the index of the first success in each seed's sample order.",
        "retries": "one conversation per seed; each failed attempt's feedback becomes the next user turn; "
        f"over a {spec['retry_window_tokens']}-token window the oldest attempts are dropped first, feedback last.",
    }
    lines += [f"- **{METHOD_LABELS[m]}**: {descriptions[m]}" for m in summary["methods"]]
    lines += [
        "",
        "## Attempts to first success",
        "",
        "Median over seeds and min–max spread; a seed that found nothing within the budget is shown "
        f'as "—" and counts as beyond {budget} (never as a number).',
        "",
        "| question | method | median attempts | spread (min–max) | seeds that found one | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for row in attempts_rows(units, budget):
        per_seed = ", ".join(
            f"s{s}: {f if f is not None else '—'}" for s, f in zip(row["seeds"], row["first_successes"])
        )
        lines.append(
            f"| `{row['task_id']}` | {METHOD_LABELS[row['method']]} | {_median_text(row['median'], budget)} | "
            f"{row['spread']} | {row['found']}/{len(row['seeds'])} | {per_seed} |"
        )
    ks = _report_ks(budget, spec["group_size"])
    lines += [
        "",
        "## Discovery@k (mean over questions)",
        "",
        "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for method in [m for m in METHODS if m in curves]:
        values = curves[method]["all"]
        lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(f"{values[k - 1]:.2f}" for k in ks) + " |")
    lines += ["", "![discovery@k](discovery_at_k.png)", ""]
    lines += _best_of_k_counts(units)
    lines += _costs(units, summary["methods"])
    lines += ["**Reading:** " + reading({m: c["all"] for m, c in curves.items()}, budget, chains), ""]
    lines += ["Reproduce with:", "", "```bash", summary["command"], "```", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def _best_of_k_counts(units: Sequence[UnitResult]) -> list[str]:
    runs = [u for u in units if u.method == "best_of_k"]
    if not runs:
        return []
    lines = [
        "Initial model, i.i.d. samples (all seeds pooled):",
        "",
        "| question | successes / samples | success rate |",
        "|---|---|---|",
    ]
    for task in dict.fromkeys(u.task_id for u in runs):
        mine = [u for u in runs if u.task_id == task]
        n, c = sum(len(u.attempts) for u in mine), sum(u.successes for u in mine)
        lines.append(f"| `{task}` | {c} / {n} | {c / n:.3f} |")
    return [*lines, ""]


def _costs(units: Sequence[UnitResult], methods: Sequence[str]) -> list[str]:
    lines = [
        "Cost: attempts generated (all seeds and questions), judge errors among them (counted as "
        "attempts without a success), and wall-clock seconds (SDPO's include its training steps).",
        "",
        "| method | attempts generated | judge errors | wall-clock s |",
        "|---|---|---|---|",
    ]
    for method in methods:
        mine = [u for u in units if u.method == method]
        lines.append(
            f"| {METHOD_LABELS[method]} | {sum(len(u.attempts) for u in mine)} | "
            f"{sum(u.judge_errors for u in mine)} | {sum(u.wall_s for u in mine):.1f} |"
        )
    retries = [u for u in units if u.method == "retries"]
    if retries:
        dropped = max(u.extra.get("max_attempts_dropped", 0) for u in retries)
        feedback = max(u.extra.get("max_feedback_dropped", 0) for u in retries)
        tokens = max(u.extra.get("max_prompt_tokens", 0) for u in retries)
        lines += [
            "",
            f"Retry window: at most {dropped} past attempt(s) and {feedback} feedback turn(s) were dropped "
            f"from a conversation; the longest retry prompt had {tokens} tokens.",
        ]
    return [*lines, ""]
