"""``sdpo judge``: run a solution against a code task in the sandbox and print the feedback.

Exit status: 0 when the solution was judged (whatever the verdict), 2 for a usage error
(unknown task, missing file), 3 when the judge itself failed (``judge_error``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

from environments.code_exec.env import CodeExecEnv
from sdpo_envs.executors import make_executor
from sdpo_envs.feedback import Feedback
from sdpo_envs.sandbox import SandboxUnavailable

from .errors import UsageError
from .options import add_judge_backend_flags

ENV_ID = "sdpo/CodeExec-v0"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task id, e.g. HumanEval/0")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=None, help="built-in task set or file (default: humaneval)")
    source.add_argument(
        "--tasks-file", default=None, help="JSONL file of task rows (the env's schema, or raw LCB rows)"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--solution", help="Python file to judge as the solution ('-' reads stdin)")
    what.add_argument("--answer", help="a model answer (text with a ```python block) to extract and judge")
    what.add_argument("--canonical", action="store_true", help="judge the task's canonical solution")
    parser.add_argument("--backend", default="auto", help="sandbox backend: auto, bwrap, docker, process")
    parser.add_argument(
        "--verbose", action="store_true", help="list every protection the sandbox enforced, one per line"
    )
    parser.add_argument(
        "--allow-unsafe", action="store_true", help="allow the 'process' backend (no isolation)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="CPU seconds per test (default: the task's own limit)"
    )
    parser.add_argument(
        "--memory-mb", type=int, default=None, help="memory per test, MB (default: the task's own limit)"
    )
    parser.add_argument(
        "--reward",
        choices=("binary", "fraction"),
        default="binary",
        help="1 only if all pass, or the share passed",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    add_judge_backend_flags(parser)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _find_task(env: Any, task_id: str) -> dict[str, Any] | None:
    for index in range(len(env.tasks)):
        row = env.tasks[index]
        if env.task_id(row, index) == task_id:
            return env.validate_task(row)
    return None


def _known_ids(env: Any, limit: int = 5) -> str:
    ids = [env.task_id(env.tasks[i], i) for i in range(min(limit, len(env.tasks)))]
    return ", ".join(ids) + (", ..." if len(env.tasks) > limit else "")


def _table(details: dict[str, Any]) -> list[str]:
    lines = [f"{'test':>4}  {'visibility':<10}  {'kind':<6}  {'verdict':<14}  {'cpu s':>7}  {'wall s':>7}"]
    for record in details.get("tests", []):
        cpu = f"{record['cpu_s']:.3f}" if "cpu_s" in record else "-"
        wall = f"{record['wall_s']:.3f}" if "wall_s" in record else "-"
        visibility = "public" if record.get("public") else "hidden"
        lines.append(
            f"{record['index'] + 1:>4}  {visibility:<10}  {record.get('kind', ''):<6}  "
            f"{record['verdict']:<14}  {cpu:>7}  {wall:>7}"
        )
    return lines


def isolation_items(isolation: str) -> list[str]:
    """The sandbox's record split into its protections: ``bwrap: a, b (c, d), e`` -> the
    backend's line, then a, b (c, d), e (commas inside brackets do not split)."""
    backend, _, rest = isolation.partition(": ")
    items, depth, current = [], 0, ""
    for char in rest:
        depth += char in "(["
        depth -= char in ")]"
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items = [item for item in [*items, current.strip()] if item]
    return [backend, *items] if rest else ([isolation] if isolation else [])


def short_isolation(isolation: str) -> str:
    """One short line: the backend and how many protections it recorded (``--verbose`` lists them)."""
    items = isolation_items(isolation)
    if len(items) <= 1:
        return isolation or "n/a"
    return f"{items[0]} ({len(items) - 1} protections enforced; --verbose lists them)"


def run(args: argparse.Namespace) -> int:
    dataset = args.tasks_file or args.dataset or "humaneval"
    env = CodeExecEnv(
        dataset,
        backend=args.backend,
        time_limit_s=args.time_limit,
        memory_mb=args.memory_mb,
        reward=args.reward,
        allow_unsafe=args.allow_unsafe,
    )
    task = _find_task(env, args.task)
    if task is None:
        raise UsageError(f"no task {args.task!r} in {dataset!r} (tasks: {_known_ids(env)})")
    if args.canonical:
        if not task.get("canonical_solution"):
            raise UsageError(f"task {args.task!r} has no canonical solution; give --solution or --answer")
        call, text = env.judge_solution, task["canonical_solution"]
    elif args.answer:
        call, text = env.judge, _read(args.answer)
    else:
        call, text = env.judge_solution, _read(args.solution)
    executor = make_executor(args.judge_backend, ray_address=args.ray_address)
    try:
        (outcome,) = executor.map(functools.partial(call, task), [text])
    except SandboxUnavailable as exc:  # pragma: no cover - judge_code reports it as judge_error
        print(f"sdpo: error: {exc}", file=sys.stderr)
        return 3
    reward, feedback = outcome.value if outcome.ok else (0.0, Feedback.judge_error(outcome.error))
    isolation = feedback.details.get("isolation", "")
    if args.json:
        print(
            json.dumps({"task_id": args.task, "reward": reward, **feedback.to_dict()}, indent=2, default=str)
        )
    else:
        print(f"task:      {args.task}")
        print(f"verdict:   {feedback.verdict}")
        print(f"reward:    {reward:g}")
        if args.verbose:
            print("isolation:")
            print("\n".join(f"  {item}" for item in isolation_items(isolation)) or "  n/a")
        else:
            print(f"isolation: {short_isolation(isolation)}")
        print("feedback:")
        print("  " + feedback.text.replace("\n", "\n  "))
        if feedback.details.get("tests"):
            print()
            print("\n".join(_table(feedback.details)))
        if feedback.is_judge_error:
            print(f"judge error: {feedback.details.get('reason', '')}", file=sys.stderr)
    return 3 if feedback.is_judge_error else 0
