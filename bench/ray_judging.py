"""Judging throughput: this host's thread pool against Ray on one node and on two nodes.

    .venv/bin/python bench/ray_judging.py [--math-calls 1000] [--code-calls 64] [--noop-calls 2000]
        [--rounds 2] [--cpus-per-node 2]

One run starts a throwaway local Ray cluster (``LocalRayCluster``: each node its own ``ray
start``, its own raylet), first with one node, then with a second joined, and judges the same
batches three ways: the local pool (``LocalExecutor``, four threads per CPU), Ray on the one
node and Ray on both (``RayExecutor``, four slots per CPU of each node). Workloads: sdpo/Math-v0
answers (a third right, a third wrong, a third unparsable; milliseconds each), sdpo/CodeExec-v0
HumanEval canonical solutions (a sandbox run each) and a no-op call (``abs``), whose time is
all executor: the per-call overhead Ray adds is its no-op time per call minus the pool's. Every
side is warmed (sandboxes, math-verify workers, actors) before the clock starts; the best of
``--rounds`` rounds counts. The verdicts of every side are compared with the local pool's.

On one machine the two "nodes" share its CPUs: the two-node row shows what spreading costs,
not what a second machine would add (on a cluster each node brings its own CPUs and slots).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from sdpo_envs import make_env_factory
from sdpo_envs.executors import Executor, LocalExecutor, RayExecutor
from sdpo_envs.executors.local_cluster import LocalRayCluster

RESULTS = Path(__file__).with_name("results") / "ray_judging.json"


def env_batch(env_id: str, n: int, action: Callable[[Any, int], str]) -> Callable[[], tuple[list, list[str]]]:
    """A builder of ``n`` fresh envs of ``env_id`` on its tasks in turn, each with ``action(env, i)``."""
    factory = make_env_factory(env_id)
    tasks = factory().tasks

    def build() -> tuple[list, list[str]]:
        envs, actions = [], []
        for i in range(n):
            env = factory()
            env.reset(seed=0, options={"index": i % len(tasks)})
            actions.append(action(env, i))
            envs.append(env)
        return envs, actions

    return build


def math_batch(n: int) -> Callable[[], tuple[list, list[str]]]:
    """Right, wrong and unparsable answers in turn."""
    return env_batch(
        "sdpo/Math-v0",
        n,
        lambda env, i: (f"\\boxed{{{env.task['answer']}}}", "\\boxed{-7.5}", "no final answer")[i % 3],
    )


def code_batch(n: int) -> Callable[[], tuple[list, list[str]]]:
    """Each task's canonical solution."""
    return env_batch("sdpo/CodeExec-v0", n, lambda env, i: env.oracle_actions(env.task)[0])


def timed_steps(executor: Executor, build: Callable, rounds: int) -> tuple[float, list[str]]:
    """Best calls/s over ``rounds`` fresh batches, and the verdicts of the last."""
    best, verdicts = 0.0, []
    for _ in range(rounds):
        envs, actions = build()
        start = time.perf_counter()
        results = executor.step(envs, actions, timeout_s=300)
        best = max(best, len(envs) / (time.perf_counter() - start))
        verdicts = [r.info["verdict"] for r in results]
    return best, verdicts


def timed_noop(executor: Executor, n: int, rounds: int) -> float:
    """Best seconds per no-op call."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        outcomes = executor.map(abs, list(range(-n, 0)))
        assert all(o.ok for o in outcomes)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def measure(executor: Executor, workloads: dict[str, Callable], args: argparse.Namespace) -> dict:
    row: dict = {}
    for name, build in workloads.items():
        timed_steps(executor, build, 1)  # warm-up: sandboxes, math-verify workers, actors' imports
        row[name], row[f"{name}_verdicts"] = timed_steps(executor, build, args.rounds)
    row["noop_s"] = timed_noop(executor, args.noop_calls, args.rounds)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--math-calls", type=int, default=1000)
    parser.add_argument("--code-calls", type=int, default=64)
    parser.add_argument("--noop-calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    workloads = {"math": math_batch(args.math_calls), "code": code_batch(args.code_calls)}
    rows: dict[str, dict] = {}
    rows["local pool"] = measure(LocalExecutor(), workloads, args)
    with LocalRayCluster(nodes=1, cpus_per_node=args.cpus_per_node) as cluster:
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            cluster.wait_for_nodes(1)
            executor = RayExecutor(cluster.address)
            executor.wait_ready(nodes=1)
            rows["Ray, 1 node"] = measure(executor, workloads, args)
            cluster.add_node()
            cluster.wait_for_nodes(2)
            executor.pool.refresh(force=True)
            if executor.wait_ready(nodes=2) != 2:
                raise RuntimeError("the second node's actor did not come up")
            rows["Ray, 2 nodes"] = measure(executor, workloads, args)
            executor.close()
        finally:
            ray.shutdown()
    report(rows, args)


def report(rows: dict[str, dict], args: argparse.Namespace) -> None:
    base = rows["local pool"]
    print(f"load average at end: {os.getloadavg()[0]:.1f}; {args.cpus_per_node} CPU(s) per Ray node")
    print(
        f"{'side':<14} {'math calls/s':>13} {'ratio':>6} {'code calls/s':>13} {'ratio':>6} "
        f"{'no-op us/call':>14} {'Ray adds':>9} {'verdicts = local':>17}"
    )
    for side, row in rows.items():
        same = all(row[f"{w}_verdicts"] == base[f"{w}_verdicts"] for w in ("math", "code"))
        added = "-" if side == "local pool" else f"{(row['noop_s'] - base['noop_s']) * 1e6:.0f} us"
        print(
            f"{side:<14} {row['math']:>13.0f} {row['math'] / base['math']:>6.2f} {row['code']:>13.1f} "
            f"{row['code'] / base['code']:>6.2f} {row['noop_s'] * 1e6:>14.0f} {added:>9} {'yes' if same else 'NO':>17}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    summary = {
        side: {k: v for k, v in row.items() if not k.endswith("_verdicts")} for side, row in rows.items()
    }
    RESULTS.write_text(json.dumps({"args": vars(args), "rows": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
