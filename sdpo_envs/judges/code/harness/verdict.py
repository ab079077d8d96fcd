"""A test's verdict from how its worker ended: limits, crashes, exceptions, timings."""

import _signal
import time
from _signal import SIGKILL

from .run import STARVED
from .wire import KEEP_STDERR, MAX_SHOWN, decode_message

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from typing import Any

    from .run import Run

    Record = dict[str, Any]  # a test's result, as the report holds it

_SIGNAL_NAMES: dict[int, str] = {}
for _name in sorted(dir(_signal)):
    if _name.startswith("SIG") and not _name.startswith("SIG_") and isinstance(getattr(_signal, _name), int):
        _SIGNAL_NAMES.setdefault(getattr(_signal, _name), _name)


def _signal_name(sig: int) -> str:
    return _SIGNAL_NAMES.get(sig, f"signal {sig}")


def _timing(run: "Run") -> "Record":
    ex = run.exit or {}
    timing: Record = {
        "cpu_s": round(ex.get("cpu_s") or 0.0, 4),
        "wall_s": round(time.monotonic() - run.start, 4),
    }
    if ex.get("peak_mb") is not None:
        timing["peak_mb"] = round(ex["peak_mb"], 1)
    return timing


def _classify_end(run: "Run", limits: "dict[str, Any]", message: "Record | None" = None) -> "Record | None":
    """A failure verdict from how the worker ended (limits, crash, exception), or None."""
    ex = run.exit or {}
    sig = ex.get("signal")
    if run.kill_reason == "wall":
        return {"verdict": "time_limit", "detail": "wall"}
    if run.kill_reason == STARVED or run.starved:  # the judge runs it again: not scored
        return {"verdict": STARVED, "detail": "starved of CPU by other programs past the wall clock"}
    if run.kill_reason == "output":
        return {"verdict": "runtime_error", "detail": "output_limit"}
    if run.lost:
        return {"verdict": "runtime_error", "detail": "judge_killed"}
    if (ex.get("cpu_s") or 0.0) > limits["cpu_s"] or sig == _signal.SIGXCPU:
        return {"verdict": "time_limit", "detail": "cpu"}
    exc = clean_exc((message or {}).get("exc"))
    if exc and exc.get("type") == "MemoryError":
        return {"verdict": "memory_limit", "error": exc}
    if sig is not None and run.kill_reason != "done":
        peak = ex.get("peak_mb") or 0.0
        if (sig == SIGKILL and peak >= 0.8 * limits["memory_mb"]) or b"MemoryError" in run.err:
            return {"verdict": "memory_limit", "detail": _signal_name(sig)}
        return {"verdict": "runtime_error", "detail": "signal", "signal": _signal_name(sig)}
    if exc:
        return {"verdict": "runtime_error", "error": exc}
    return None


def shown(value: object) -> str:
    """``repr(value)``, bounded; a placeholder for a value too deep or too large to print."""
    try:
        return repr(value)[:MAX_SHOWN]
    except (RecursionError, ValueError, MemoryError, OverflowError):
        return "<a value too deeply nested or too large to show>"


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def clean_exc(exc: object) -> "Record | None":
    """The worker's description of an exception, reduced to bounded plain fields (a forged
    description is plain text at worst: nothing of it is converted or printed as given)."""
    if not isinstance(exc, dict):
        return None
    clean: Record = {
        "type": _text(exc.get("type"), 100) or "Exception",
        "msg": _text(exc.get("msg", ""), MAX_SHOWN),
    }
    if type(exc.get("line")) is int:
        clean["line"] = exc["line"]
    for key, limit in (("func", 100), ("source", 200)):
        if isinstance(exc.get(key), str):
            clean[key] = exc[key][:limit]
    return clean


def conclude(
    run: "Run", limits: "dict[str, Any]", outcome: "Record", message: "Record | None" = None
) -> "Record":
    """End the test: kill the worker, let limits and crashes override ``outcome``, add timings."""
    run.finish()
    for frame in run.frames:  # an error nobody asked for (the solution failed to load, say)
        unread = decode_message(frame)
        if message is None and "exc" in unread:
            message = unread
    result = _classify_end(run, limits, message) or outcome
    if result["verdict"] != "pass" and run.err:
        result["stderr"] = bytes(run.err[:KEEP_STDERR]).decode("utf-8", errors="replace")[:MAX_SHOWN]
    return dict(_timing(run), **result)
