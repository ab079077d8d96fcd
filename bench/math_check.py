"""Throughput of the isolated math checker against math-verify called in-process.

    .venv/bin/python bench/math_check.py [--pairs 1000] [--workers 2] [--rounds 5] [--seed 0]

Both sides check the same deterministic (answer, gold) pairs -- integers, fractions,
decimals and LaTeX expressions, about half of them correct -- in one run. The direct side
calls ``verify(parse(gold), parse(answer))`` on the main thread with math-verify's default
(signal) timeouts; the pooled side sends the pairs through ``MathVerifyPool.check_many``.
The sides alternate on slices of the pairs; each sees every pair once (math-verify caches
parsed LaTeX per process), and worker start-up is done before the clock starts. Prints checks/s of both, their ratio
(goal >= 0.8), the agreement of the verdicts (goal 100 %) and the CPU time each side
spends per check (caller + workers for the pool), which a busy shared machine does not skew.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdpo_envs.judges.math.pool import MathVerifyPool


def _integer(rng: random.Random) -> tuple[str, str, str]:
    n = rng.randint(-5000, 50_000)
    shown = f"{n:,}" if n >= 1000 and rng.random() < 0.3 else str(n)
    return str(n), shown, str(n + rng.choice([-10, -1, 1, 2, 100]))


def _fraction(rng: random.Random) -> tuple[str, str, str]:
    a, b, k = rng.randint(1, 40), rng.randint(2, 40), rng.randint(2, 5)
    gold = rng.choice([f"{a}/{b}", f"\\frac{{{a}}}{{{b}}}"])
    return gold, f"\\frac{{{a * k}}}{{{b * k}}}", f"\\frac{{{a + 1}}}{{{b}}}"


def _decimal(rng: random.Random) -> tuple[str, str, str]:
    q = rng.choice([2, 4, 5, 8, 10, 20, 25])
    p = rng.randint(1, q - 1)
    return f"{p / q:g}", f"\\frac{{{p}}}{{{q}}}", f"{p / q + 0.01:g}"


def _expression(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return rng.choice(
        [
            (f"{a}\\sqrt{{2}}", f"\\sqrt{{{2 * a * a}}}", f"\\sqrt{{{2 * a * a + 1}}}"),
            (f"x^2 + {2 * a}x + {a * a}", f"(x + {a})^2", f"(x + {a + 1})^2"),
            (
                f"\\frac{{{a}\\pi}}{{{b + 1}}}",
                f"\\frac{{{2 * a}\\pi}}{{{2 * b + 2}}}",
                f"\\frac{{{a}\\pi}}{{{b + 2}}}",
            ),
            (f"{a} + {b}i", f"{b}i + {a}", f"{a} - {b}i"),
            (f"\\left({a}, {b}\\right)", f"({a},{b})", f"({b + a},{a})"),
        ]
    )


def make_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` deterministic (answer, gold) pairs, about half of them correct."""
    rng = random.Random(seed)
    kinds = [_integer, _fraction, _decimal, _expression]
    pairs = []
    for i in range(count):
        gold, right, wrong = kinds[i % len(kinds)](rng)
        value = right if rng.random() < 0.5 else wrong
        prefix = rng.choice(["", "So the final answer is ", "Putting it together, we get "])
        pairs.append((f"{prefix}$\\boxed{{{value}}}$", f"${gold}$"))
    return pairs


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by processes ``pids`` (Linux ``/proc``; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Side:
    """Verdicts and the wall-clock and CPU seconds one side spent on them."""

    verdicts: list = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def rate(self, seconds: float) -> float:
        return len(self.verdicts) / seconds


def run_direct(pairs: list[tuple[str, str]], side: Side) -> None:
    from math_verify import parse, verify

    cpu, wall = time.process_time(), time.perf_counter()
    side.verdicts += [bool(verify(parse(gold), parse(answer))) for answer, gold in pairs]
    side.wall_s += time.perf_counter() - wall
    side.cpu_s += time.process_time() - cpu


def run_pool(pool: MathVerifyPool, pairs: list[tuple[str, str]], side: Side) -> None:
    pids = pool.worker_pids()
    cpu, workers_cpu, wall = time.process_time(), _cpu_s(pids), time.perf_counter()
    side.verdicts += [r.correct for r in pool.check_many(pairs)]
    side.wall_s += time.perf_counter() - wall
    side.cpu_s += time.process_time() - cpu + _cpu_s(pids) - workers_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--rounds", type=int, default=5, help="alternate the two sides this many times")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    pairs = make_pairs(args.pairs, args.seed)
    direct, pooled = Side(), Side()
    run_direct([("$\\boxed{1}$", "1")], Side())  # import math-verify and SymPy before timing
    with MathVerifyPool(workers=args.workers) as pool:
        started = time.perf_counter()
        pool.check_many([("$\\boxed{1}$", "1")] * args.workers)  # start every worker
        startup_s = time.perf_counter() - started
        # Alternate the sides on slices of the pairs: on a shared machine, a burst of load
        # from elsewhere then hits both sides alike.
        step = -(-len(pairs) // args.rounds)
        for i in range(0, len(pairs), step):
            run_direct(pairs[i : i + step], direct)
            run_pool(pool, pairs[i : i + step], pooled)

    n = len(pairs)
    agree = sum(d == p for d, p in zip(direct.verdicts, pooled.verdicts))
    ratio = pooled.rate(pooled.wall_s) / direct.rate(direct.wall_s)
    print(
        f"pairs: {n} ({sum(direct.verdicts)} correct per math-verify), rounds: {args.rounds}, cpus: {os.cpu_count()}"
    )
    print(f"direct math-verify (in-process, main thread): {direct.rate(direct.wall_s):8.1f} checks/s")
    print(f"MathVerifyPool ({args.workers} workers, killable):   {pooled.rate(pooled.wall_s):8.1f} checks/s")
    print(f"ratio pool/direct: {ratio:.2f}x  (goal >= 0.8x)")
    print(f"agreement: {agree}/{n} = {100 * agree / n:.1f} %  (goal 100 %)")
    if pooled.cpu_s > 0:
        overhead = pooled.cpu_s / direct.cpu_s - 1
        print(
            f"CPU per check: direct {1000 * direct.cpu_s / n:.2f} ms, pool {1000 * pooled.cpu_s / n:.2f} ms "
            f"(caller + workers; overhead {100 * overhead:+.1f} %)"
        )
    print(
        f"judge errors in pool: {sum(p is None for p in pooled.verdicts)}; worker start-up: {startup_s:.2f} s"
    )


if __name__ == "__main__":
    main()
