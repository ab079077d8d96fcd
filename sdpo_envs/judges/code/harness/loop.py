"""The run loop: every test in turn, each on its own worker, within the timeout budget."""

from .kinds import RUNNERS, BadTest
from .run import Run
from .spawn import ZygoteGone, worker_from_zygote


def worker_request(test, limits):
    """What a worker needs to know of a test: never its data."""
    if test["kind"] == "stdio":
        return {"op": "run", "mode": "stdio", "fn": None, "limits": limits}
    return {"op": "run", "mode": "call", "fn": test.get("fn") or test.get("entry_point"), "limits": limits}


def run_tests(tests, limits, first, zyg):
    """Run every test: the first on the pre-forked worker ``first`` if any, the rest via Z."""
    max_timeouts = limits.get("max_timeouts")
    results = []
    timeouts = 0
    for index, test in enumerate(tests):
        worker, first = first, None
        if worker is not None:
            keep = {zyg.pid} if zyg is not None else ()

            def launch(mode, fn, stdin_data, worker=worker, keep=keep):
                return Run(worker, limits, stdin_data, keep)

        else:

            def launch(mode, fn, stdin_data):
                request = {"op": "run", "mode": mode, "fn": fn, "limits": limits}
                return Run(worker_from_zygote(zyg, request), limits, stdin_data)

        if worker is None and (zyg is None or not zyg.alive):
            result = {"verdict": "runtime_error", "detail": "judge_killed"}
        elif max_timeouts is not None and timeouts >= max_timeouts:
            result = {"verdict": "skipped"}  # after a timeout, a slow program only burns time
        else:
            try:
                result = RUNNERS[test["kind"]](launch, test, limits)
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
