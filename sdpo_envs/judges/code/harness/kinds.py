"""The three kinds of test, as P runs them: stdio (the program's stdout), call (one call of
the entry point) and assert (trusted test code in P, the entry point a proxy to W)."""

from .compare import outputs_match, values_equal
from .verdict import clean_exc, conclude, shown
from .wire import MAX_SHOWN, NotPlain, decode_message, dumps, from_wire, to_wire
from .worker import frames_in

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Callable
    from typing import Any

    from .run import Run

    Record = dict[str, Any]  # a test's result, as the report holds it
    # Starts the test's worker: launch(mode, function, stdin) -> the run
    Launch = Callable[[str, "str | None", bytes], Run]


class WorkerFailed(BaseException):
    """Raised through a test's check code when the worker failed: not catchable as Exception."""


class BadTest(Exception):
    """The test itself is unusable (a bug of the task, not of the solution)."""


def _stdio_test(launch: "Launch", test: "dict[str, Any]", limits: "dict[str, Any]") -> "Record":
    run = launch("stdio", None, test["input"].encode())
    try:
        run.pump(want_frame=False)
        run.finish()
        message = decode_message(run.frames[0]) if run.frames else {}
        code = (run.exit or {}).get("exit")  # known once the run is finished
        actual = bytes(run.out).decode("utf-8", errors="replace")
        outcome: Record
        if code:
            outcome = {"verdict": "runtime_error", "detail": "exit_code", "exit_code": code}
        elif outputs_match(actual, test["output"]):
            outcome = {"verdict": "pass"}
        else:
            outcome = {"verdict": "wrong_answer", "actual": actual[:MAX_SHOWN], "actual_chars": len(actual)}
        return conclude(run, limits, outcome, message)
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


class _Candidate:
    """Stands for the solution's function inside trusted test code: each call goes to W."""

    def __init__(self, run: "Run") -> None:
        self._run = run
        self.calls = 0
        self.last_call: str | None = None
        self.last_result: str | None = None
        self.failure: tuple[Record, Record] | None = (
            None  # (outcome, message), latched: test code cannot swallow it
        )

    def __call__(self, *args: "Any", **kwargs: "Any") -> "Any":
        if self.failure is None:
            try:
                request = dumps(to_wire((args, kwargs)))
            except (NotPlain, RecursionError):
                raise BadTest("the test passes an argument that is not plain data") from None
            self.calls += 1
            self.last_call = _call_text(args, kwargs)
            self.last_result = None
            self._run.send(request.encode())
            reply = self._reply()
            if self.failure is None:
                return self._decode(reply)
        raise WorkerFailed()

    def _decode(self, reply: "Record") -> "Any":
        if "not_plain" in reply:
            self.failure = (
                {"verdict": "wrong_answer", "detail": "not_plain", "actual_type": str(reply["not_plain"])},
                {},
            )
            raise WorkerFailed()
        try:
            value = from_wire(reply["ok"]) if isinstance(reply.get("ok"), str) else None
        except ValueError:
            value = None
        if value is None and reply.get("ok") != "null":
            self.failure = ({"verdict": "runtime_error", "detail": "no_result"}, {})
            raise WorkerFailed()
        self.last_result = shown(value)
        return value

    def _next(self) -> "tuple[bool, Record]":
        """Whether a message came from the worker (before it ended), and the message."""
        frame = self._run.pump(want_frame=True)
        return frame is not None, decode_message(frame) if frame is not None else {}

    def _reply(self) -> "Record":
        came, reply = self._next()
        while reply.get("ready") is True:
            came, reply = self._next()
        if not came or "exc" in reply:
            self._fail(reply)
        return reply

    def _fail(self, reply: "Record") -> None:
        outcome: Record = {"verdict": "runtime_error", "detail": "no_result"}
        if isinstance(reply.get("exc"), dict):
            outcome = {"verdict": "runtime_error", "error": clean_exc(reply["exc"])}
        self.failure = (outcome, reply)

    def wait_loaded(self) -> None:
        """For a test that never called the function: the solution must still load."""
        _, reply = self._next()
        if reply.get("ready") is not True:
            self._fail(reply)
            raise WorkerFailed()

    def describe(self, result: "Record") -> "Record":
        """``result`` with the last call (and what it returned) and the number of calls."""
        if self.last_call is not None:
            result["call"] = self.last_call
            if self.last_result is not None:
                result.setdefault("actual", self.last_result)
        result["calls"] = self.calls
        return result


def _call_text(args: "tuple[Any, ...]", kwargs: "dict[str, Any]") -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)[:MAX_SHOWN]


def _failed_outcome(run: "Run", candidate: _Candidate) -> "tuple[Record, Record]":
    assert candidate.failure is not None  # set before any WorkerFailed is raised
    outcome, message = candidate.failure
    run.finish()
    if outcome.get("detail") == "no_result" and run.exit and run.exit.get("exit") not in (None, 0):
        outcome = {"verdict": "runtime_error", "detail": "exit_code", "exit_code": run.exit["exit"]}
    return outcome, message


def _call_test(launch: "Launch", test: "dict[str, Any]", limits: "dict[str, Any]") -> "Record":
    run = launch("call", test["fn"], b"")
    candidate = _Candidate(run)
    try:
        try:
            actual = candidate(*test.get("args", []), **test.get("kwargs", {}))
        except WorkerFailed:
            outcome, message = _failed_outcome(run, candidate)
            return candidate.describe(conclude(run, limits, outcome, message))
        if values_equal(actual, test["expected"], test.get("strict") is True):
            return conclude(run, limits, {"verdict": "pass"})
        return conclude(run, limits, {"verdict": "wrong_answer", "actual": candidate.last_result})
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


def _assert_test(launch: "Launch", test: "dict[str, Any]", limits: "dict[str, Any]") -> "Record":
    try:
        code = compile(test["code"], "<test>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise BadTest(f"the test code does not compile: {exc}") from None
    run = launch("call", test["entry_point"], b"")
    candidate = _Candidate(run)
    namespace = {"__name__": "__test__", test["entry_point"]: candidate}
    outcome: Record
    message: Record | None = None
    try:
        try:
            exec(code, namespace)
            namespace[test["entry_point"]] = candidate  # the code may define a stub of that name
            check = namespace.get("check")
            if callable(check):
                check(candidate)
            if candidate.failure is not None:
                raise WorkerFailed()
            if candidate.calls == 0:
                candidate.wait_loaded()
            outcome = {"verdict": "pass"}
        except WorkerFailed:
            outcome, message = _failed_outcome(run, candidate)
        except AssertionError as exc:
            outcome = {"verdict": "wrong_answer", "assert_line": _test_line(exc)}
        except BadTest:
            raise
        except BaseException as exc:  # trusted test code choked on what the solution returned
            outcome = {
                "verdict": "wrong_answer",
                "assert_line": _test_line(exc),
                "test_error": type(exc).__name__,
            }
            outcome["msg"] = str(exc)[:200]
        return candidate.describe(conclude(run, limits, outcome, message))
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


def _test_line(exc: BaseException) -> "int | None":
    frames = frames_in(exc.__traceback__, "<test>")
    return frames[-1][0] if frames else None


RUNNERS: "dict[str, Callable[[Launch, dict[str, Any], dict[str, Any]], Record]]" = {
    "stdio": _stdio_test,
    "call": _call_test,
    "assert": _assert_test,
}
