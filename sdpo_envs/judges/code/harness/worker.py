"""W, the worker: runs the solution as ``__main__`` (stdio tests) or serves calls of its
entry point (call and assert tests), under per-test rlimits, without capabilities, once P says
"go". Also what every worker inherits from P: the compiled solution (``prepare``).
"""

import builtins
import math
import os
import resource
import struct
import sys

from .ipc import framed, read_exact, write_all
from .privileges import PR_SET_NO_NEW_PRIVS, drop_capabilities, prctl, python_default_signals
from .procs import quietly
from .wire import MAX_SHOWN, NotPlain, dumps, from_wire, to_wire

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Callable
    from types import ModuleType, TracebackType
    from typing import Any, NoReturn

    from .privileges import _Libc

    # What every worker inherits from P (``prepare``): the compiled solution and its context.
    State = dict[str, Any]


def frames_in(tb: "TracebackType | None", filename: str) -> list[tuple[int, str]]:
    """(line, function) of the traceback entries in ``filename``, outermost first."""
    found: list[tuple[int, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            found.append((tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return found


def _describe_exception(exc: BaseException, state: "State") -> "dict[str, Any]":
    """Type, message and the innermost line of the solution where it was raised."""
    info: dict[str, Any] = {"type": type(exc).__name__, "msg": ""}
    try:
        info["msg"] = str(exc)[:MAX_SHOWN]
    except BaseException:
        info["msg"] = "<unprintable message>"
    lines = state["lines"]
    frames = frames_in(exc.__traceback__, state["filename"])
    if frames:
        line, func = frames[-1]
        info.update(line=line, func=func)
        if line and 0 < line <= len(lines):
            info["source"] = lines[line - 1].strip()[:200]
    elif isinstance(exc, SyntaxError) and exc.filename == state["filename"]:
        info["line"] = exc.lineno
    return info


def _lower(which: int, soft: int, hard: "int | None" = None) -> None:
    """Set a limit, never above what the sandbox already imposes (that would fail)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def _set_worker_limits(limits: "dict[str, Any]") -> None:
    cpu = max(1, math.ceil(limits["cpu_s"]))  # SIGXCPU; the exact limit is checked on measured CPU
    _lower(resource.RLIMIT_CPU, cpu, cpu + 1)
    memory = int(limits["memory_mb"]) << 20
    _lower(resource.RLIMIT_AS, memory)
    _lower(resource.RLIMIT_FSIZE, int(limits.get("file_mb", 64)) << 20)
    _lower(resource.RLIMIT_CORE, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = min(memory, 256 << 20) if hard == resource.RLIM_INFINITY else min(hard, memory)
    if soft != resource.RLIM_INFINITY and want > soft:
        # Deep recursion after sys.setrecursionlimit() should not die of an 8 MB stack.
        quietly(resource.setrlimit, resource.RLIMIT_STACK, (want, hard))


def _resolve(namespace: "dict[str, Any]", name: str) -> "Callable[..., Any]":
    """The callable named ``name``: a function, ``Solution().name``, or a dotted path."""
    parts = name.split(".")
    if parts[0] in namespace:
        target = namespace[parts[0]]
    elif (
        len(parts) == 1
        and isinstance(namespace.get("Solution"), type)
        and hasattr(namespace["Solution"], name)
    ):
        target, parts = namespace["Solution"], ["Solution", name]  # LeetCode style
    else:
        raise NameError(f"the solution does not define {name!r}")
    for part in parts[1:]:
        if isinstance(target, type):
            target = target()
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{name!r} is not callable")
    return target


def run_worker(fds: "list[int]", request: "dict[str, Any]", state: "State") -> "NoReturn":
    """Runs in W; never returns."""
    in_r, out_w, err_w, chan = fds
    status = 70
    channel_ready = False
    try:
        os.setpgid(0, 0)
        python_default_signals()
        os.dup2(in_r, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if chan != 3:
            os.dup2(chan, 3)
        os.set_inheritable(3, False)
        channel_ready = True
        os.closerange(4, max(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        _set_worker_limits(request["limits"])
        prctl(state["libc"], PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        drop_capabilities(state["libc"])
        # The solution's own standard streams: fresh objects on the pipes to P.
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # type: ignore[misc]  # noqa: SIM115
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # type: ignore[misc]  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(  # type: ignore[misc]  # noqa: SIM115
            2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
        )
        sys.argv = [state["filename"]]
        sys.path.extend(state["site_dirs"])
        # Nothing untrusted runs before P says so: by then P has read and cleared its stdin.
        if _read_request() is None:
            os._exit(0)
        if request["mode"] == "stdio":
            status = _run_program(state)
        else:
            status = _serve_calls(state, request["fn"])
    except BaseException as exc:  # the worker's own failure: report it, then leave
        try:
            if channel_ready:
                _send_to_parent({"exc": _describe_exception(exc, state)})
        except BaseException:
            pass
    finally:
        os._exit(status)


def _send_to_parent(obj: object) -> None:
    write_all(3, framed(dumps(obj).encode()))


def _load(state: "State", name: str) -> "ModuleType":
    """Run the solution (after its prelude) as the module ``name``."""
    module = type(sys)(name)
    module.__file__ = state["filename"]
    # The builtins module, as any __main__ has (a harness module's own __builtins__ is a dict).
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules[name] = module
    if state["prelude"] is not None:
        exec(state["prelude"], module.__dict__)
    exec(state["code"], module.__dict__)
    return module


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib costs import time)
            stream.flush()
        except BaseException:
            pass


def _run_program(state: "State") -> int:
    """A stdio test: the solution as ``__main__``; its exit status."""
    status = 0
    try:
        _load(state, "__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or code is False:
            status = 0
        elif isinstance(code, int):
            status = code & 0xFF
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException as exc:
        _flush_std()
        _send_to_parent({"exc": _describe_exception(exc, state)})
        return 1
    _flush_std()
    return status


def _read_request() -> "bytes | None":
    """The next frame from P on the channel (fd 3); ``None`` when P closed it."""
    header = b""
    while len(header) < 4:
        chunk = os.read(3, 4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">I", header)
    return read_exact(3, size)


def _serve_calls(state: "State", fn_name: str) -> int:
    """Call and assert tests: answer P's calls of the entry point until P closes the channel."""
    try:
        target = _resolve(_load(state, "solution").__dict__, fn_name)
    except BaseException as exc:
        _flush_std()
        _send_to_parent({"exc": _describe_exception(exc, state)})
        return 1
    _send_to_parent({"ready": True})  # P reads it only if the test never calls the function
    while True:
        request = _read_request()
        if request is None:
            return 0
        args, kwargs = from_wire(request)
        try:
            result = target(*args, **kwargs)
        except BaseException as exc:
            reply: dict[str, Any] = {"exc": _describe_exception(exc, state)}
        else:
            try:
                reply = {"ok": dumps(to_wire(result, coerce=True))}
            except (NotPlain, RecursionError) as exc:
                reply = {"not_plain": str(exc)[:100] or type(result).__name__}
        _flush_std()
        _send_to_parent(reply)


def _site_dirs() -> list[str]:
    """Where the solution may import installed packages from (``-S`` left them out for speed)."""
    try:
        import site  # slow, and only when the host did not pass the site dirs its probe found

        return [d for d in site.getsitepackages() if os.path.isdir(d)]
    except Exception:
        return []


def _compile_error(exc: BaseException) -> "dict[str, Any]":
    info: dict[str, Any] = {"type": type(exc).__name__, "msg": getattr(exc, "msg", None) or str(exc)}
    if isinstance(exc, SyntaxError):
        info.update(line=exc.lineno, offset=exc.offset, text=(exc.text or "").rstrip("\n")[:300])
    elif isinstance(exc, (MemoryError, RecursionError)):
        info["msg"] = "the program is too deeply nested to compile"
    return info


def prepare(libc: "_Libc | None", public: "dict[str, Any]") -> "State":
    """Everything workers inherit: the compiled solution (compiling executes nothing)."""
    source = public["solution"]
    state: State = {
        "libc": libc,
        "filename": public["filename"],
        "lines": source.splitlines(),
        "prelude": None,
    }
    state["site_dirs"] = public["site_dirs"] if public.get("site_dirs") is not None else _site_dirs()
    if public.get("prelude"):
        state["prelude"] = compile(public["prelude"], "<prelude>", "exec", dont_inherit=True)
    state["code"] = state["compile_error"] = None
    try:
        state["code"] = compile(source, state["filename"], "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        state["compile_error"] = _compile_error(exc)
    return state
