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
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from step_bench.child import run_child
from step_bench.report import LEGEND, report
from step_bench.settings import (
    BATCH_SIZE,
    EMA_RATE,
    GOAL_MEMORY,
    GOAL_SDPO_OVER_GRPO,
    GOAL_TIME,
    MARKER,
    MODELS,
    NUM_GENERATIONS,
    NUM_PROMPTS,
    ROOT,
    SCENARIOS,
    TOPK,
    TRAINERS,
    case_label,
)
from step_bench.summary import machine, run_one, summarise

QUICK_TRAINERS = ("ours-sdpo", "trl-sdpo", "ours-grpo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2-135m", help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run (default per model)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per run (default 1)")
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration this many times")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (the suite runs it): tiny model, dense scenario, SDPO and GRPO (ours, and TRL's SDPO "
        "when installed) unless --trainers/--scenarios/--models say otherwise; 1 warm-up + 2 steps, L=32",
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
    if args.quick and args.trainers == parser.get_default("trainers"):
        trainers = list(QUICK_TRAINERS)
    if args.quick and args.scenarios == parser.get_default("scenarios"):
        scenarios = ["dense"]
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
