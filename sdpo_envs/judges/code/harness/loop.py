"""The run loop: every test in turn, each on its own worker, within the timeout budget."""

from .kinds import RUNNERS, BadTest
from .run import Run
from .spawn import ZygoteGone, worker_from_zygote

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from typing import Any

    from .kinds import Launch
    from .spawn import Worker, Zygote


def worker_request(test: "dict[str, Any]", limits: "dict[str, Any] | None") -> "dict[str, Any]":
    """What a worker needs to know of a test: never its data."""
    if test["kind"] == "stdio":
        return {"op": "run", "mode": "stdio", "fn": None, "limits": limits}
    return {"op": "run", "mode": "call", "fn": test.get("fn") or test.get("entry_point"), "limits": limits}


def _launcher(worker: "Worker | None", zyg: "Zygote | None", limits: "dict[str, Any]") -> "Launch":
    """How a test starts its worker: on ``worker``, forked before the tests were read, if
    given; otherwise Z forks one."""
    if worker is not None:
        first, keep = worker, {zyg.pid} if zyg is not None else set()

        def on_first(mode: str, fn: "str | None", stdin_data: bytes) -> Run:
            return Run(first, limits, stdin_data, keep)

        return on_first
    if zyg is None:
        raise ZygoteGone("the judge's worker process is gone")  # run_tests checks this first
    zygote = zyg

    def from_zygote(mode: str, fn: "str | None", stdin_data: bytes) -> Run:
        request = {"op": "run", "mode": mode, "fn": fn, "limits": limits}
        return Run(worker_from_zygote(zygote, request), limits, stdin_data)

    return from_zygote


def run_tests(
    tests: "list[dict[str, Any]]", limits: "dict[str, Any]", first: "Worker | None", zyg: "Zygote | None"
) -> "list[dict[str, Any]]":
    """Run every test: the first on the pre-forked worker ``first`` if any, the rest via Z."""
    max_timeouts = limits.get("max_timeouts")
    results: list[dict[str, Any]] = []
    timeouts = 0
    for index, test in enumerate(tests):
        worker, first = first, None
        result: dict[str, Any]
        if worker is None and (zyg is None or not zyg.alive):
            result = {"verdict": "runtime_error", "detail": "judge_killed"}
        elif max_timeouts is not None and timeouts >= max_timeouts:
            result = {"verdict": "skipped"}  # after a timeout, a slow program only burns time
        else:
            try:
                result = RUNNERS[test["kind"]](_launcher(worker, zyg, limits), test, limits)
            except BadTest as exc:
                result = {"verdict": "judge_error", "detail": str(exc)}
            except ZygoteGone as exc:  # before any worker ran it cannot be the solution's doing
                result = {"verdict": "runtime_error", "detail": "judge_killed"}
                if index == 0:
                    result = {"verdict": "judge_error", "detail": str(exc)}
        if worker is not None:
            worker.close()
        result["index"] = index
        timeouts += result["verdict"] == "time_limit"
        results.append(result)
    return results
