"""Sampling speed of the generation backends, side by side: transformers ``generate()`` (the
default without vLLM) and vLLM (in-process, ``use_vllm=True``).

    .venv/bin/python bench/generation.py [--models smollm2-135m,tiny] [--rows 8] [--tokens 64]
        [--batches 3] [--threads 1] [--show bench/results/generation.json]

Same model, rows, tokens and threads for every backend: ``rows`` chat prompts (a group of 4
rows per prompt, as in training), exactly ``tokens`` new tokens each (``min_new_tokens`` =
``max_new_tokens``), float32, temperature 1. Each backend runs in its own subprocess (vLLM
sets process-wide state); the time is the median over ``batches`` batches after one warm-up
batch (vLLM's engine start-up and the first batch's one-off costs are reported apart). vLLM
on the CPU binds its OpenMP threads to ``--threads`` cores. Results go to
``bench/results/generation.json``; the ratios are against ``generate()``, the engine anchor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@GENERATION_RESULT@@"
BACKENDS = ("generate", "vllm")
QUESTIONS = [
    "What is 17 + 25?",
    "Name a prime larger than 20.",
    "Spell 'policy' backwards.",
    "What is 9 * 7?",
]


def measure(backend: str, model_name: str, rows: int, tokens: int, batches: int) -> dict:
    import torch

    from sdpo_agent.models.resolve import resolve_model
    from sdpo_agent.rollout.backends import build_generator
    from sdpo_agent.rollout.generation import TransformersGenerator, sampling_settings

    model, tokenizer = resolve_model(model_name)
    model.eval()
    eos = sorted({tokenizer.eos_token_id} - {None})
    settings = sampling_settings(
        1.0, use_vllm=backend == "vllm", generation_kwargs={"min_new_tokens": tokens}
    )
    if backend == "generate":
        generator = TransformersGenerator(lambda: model, tokenizer, settings, eos)
    else:
        generator = build_generator(lambda: model, tokenizer, settings, eos, max_num_seqs=rows)
    group = 4
    prompts = []
    for i in range(rows // group):
        messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        prompts.extend([list(ids["input_ids"])] * group)
    torch.manual_seed(0)
    start = time.perf_counter()
    first = generator.generate(prompts, tokens)
    first_s = time.perf_counter() - start
    assert all(len(c) == tokens for c in first), [len(c) for c in first]
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        generator.generate(prompts, tokens)
        times.append(time.perf_counter() - start)
    return {"first_batch_s": first_s, "batch_s": statistics.median(times), "batches_s": times}


def run_one(backend: str, model: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if backend == "vllm":
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if args.threads == 1 else f"0-{args.threads - 1}")
    call = json.dumps([backend, model, args.rows, args.tokens, args.batches])
    code = (
        f"import json, sys, torch; sys.path.insert(0, {str(ROOT)!r}); torch.set_num_threads({args.threads}); "
        "from bench.generation import measure, MARKER; "
        f"print(MARKER + json.dumps(measure(*json.loads({call!r}))))"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return {**json.loads(line[len(MARKER) :]), "process_s": wall}
    return {"failed": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}


def table(results: dict) -> str:
    lines = [
        "| model | backend | s / batch | vs generate() | first batch s | process s |",
        "|---|---|---|---|---|---|",
    ]
    for model, by_backend in results["models"].items():
        anchor = by_backend.get("generate", {}).get("batch_s")
        for backend, r in by_backend.items():
            if "failed" in r:
                lines.append(f"| {model} | {backend} | failed: {r['failed'][0][:80]} | | | |")
                continue
            ratio = f"{r['batch_s'] / anchor:.2f}x" if anchor else "-"
            lines.append(
                f"| {model} | {backend} | {r['batch_s']:.2f} | {ratio} | {r['first_batch_s']:.1f} | "
                f"{r['process_s']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m,tiny")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/generation.json")
    parser.add_argument("--show", type=Path, help="print the table of a saved result and exit")
    args = parser.parse_args()
    if args.show:
        print(table(json.loads(args.show.read_text())))
        return
    results = {
        "command": " ".join(["bench/generation.py", *sys.argv[1:]]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "settings": {
            "rows": args.rows,
            "tokens": args.tokens,
            "batches": args.batches,
            "threads": args.threads,
        },
        "models": {},
    }
    for model in [m for m in args.models.split(",") if m]:
        results["models"][model] = {}
        for backend in [b for b in args.backends.split(",") if b]:
            print(f"{model} / {backend} ...", flush=True)
            results["models"][model][backend] = run_one(backend, model, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
