"""Trusted in-sandbox test runner of the code judge (stdlib only, CPython >= 3.9).

Started inside the sandbox as ``python3 -S harness.py`` (or as the bytecode the sandbox's
interpreter compiled once, see ``build``); ``sdpo_envs`` never runs it on the host.
One interpreter start per solution, one fork per test. Processes:

* **P** (this process, trusted) reads the solution, compiles it and imports the stdlib
  modules it names (compiling executes nothing); then, *before reading the tests*, forks the
  worker of the first test and, if there are more tests, the zygote **Z**, so that neither
  ever holds an expected output. Only then does P read the tests (and empty its stdin), run
  every test, compare results and write the only report. P is non-dumpable (nothing it forks
  can ptrace it or open ``/proc/<P>/{mem,fd}``), ignores every catchable signal and is a
  subreaper (the first worker's orphans come back to it and are killed).
* **Z** (trusted, only for tests 2..n) forks one worker per test on P's request, reaps it
  (Z is a subreaper too) and reports its exit status and CPU time.
* **W** (worker, untrusted once it runs the solution): own process group, per-test rlimits,
  no capabilities, no_new_privs; stdin/stdout/stderr are pipes to P and a socket to P is its
  only other fd. It waits for P's "go" (sent after P has read and cleared the tests), then
  runs the solution as ``__main__`` (stdio tests) or serves calls of the entry point (call
  and assert tests), returning each result as a tagged-JSON value.

Anti-forgery: no worker holds an expected output, and none can reach P's stdout (the report
channel) or memory. P decodes a worker's results with a JSON parser into fresh plain data
(no Python syntax is parsed, nothing executed), so an object with a rigged ``__eq__``
cannot pass; the asserts of assert tests run in P with ``candidate`` a proxy that forwards
each call to the worker. A worker's messages can only make a test fail: a pass always rests
on P's own comparison and the worker's exit status. P writes the report to fd 1 once, after
every worker is dead, and exits 0; the host accepts only one report from a run that exited 0.

Wire format: stdin = 8-byte big-endian length + JSON ``{"solution", "prelude", "filename",
"site_dirs", "preload", "limits", "workers"}`` (``workers``: each test's worker mode and
function, no test data; read before any fork) + JSON ``{"tests": [...]}`` (read after).
Once read, stdin is emptied if it is a file (see ``_scrub_stdin``).
Values crossing P<->W are JSON with tags for what JSON lacks: ``{"t": [...]}`` tuple,
``{"s": [...]}`` set, ``{"f": [...]}`` frozenset, ``{"d": [[k, v], ...]}`` dict,
``{"b": "latin-1 text"}`` bytes, ``{"c": [re, im]}`` complex; NaN and infinities as JSON
extensions.

Imports are the C modules where the public wrapper would pull in ``re``/``enum`` (tens of
milliseconds per solution, the harness's main cost).
"""

import _signal
import _socket
import gc
import math
import os
import resource
import select
import struct
import sys
import time

try:
    import _json
except ImportError:  # pragma: no cover - not CPython: the json package does the same, slower
    _json = None

REPORT_VERSION = "sdpo-code-harness/1"
# Stdlib modules without import side effects (no threads, no output) that may be imported
# before forking; anything else a solution imports, it imports itself.
PRELOADABLE = frozenset(
    [
        "abc",
        "array",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "copy",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "typing",
        "unicodedata",
    ]
)
FLOAT_TOL = 1e-6
MAX_SHOWN = 1000  # characters of an actual output / result kept per failing test
KEEP_STDERR = 2000
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SIGKILL = _signal.SIGKILL
_UNCATCHABLE = {_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD}
_SIGNAL_NAMES = {}
for _name in sorted(dir(_signal)):
    if _name.startswith("SIG") and not _name.startswith("SIG_") and isinstance(getattr(_signal, _name), int):
        _SIGNAL_NAMES.setdefault(getattr(_signal, _name), _name)


def _quietly(fn, *args):
    """Call ``fn``, ignoring OSError: for cleanup steps whose target may already be gone."""
    try:
        return fn(*args)
    except OSError:
        return None


# ------------------------------------------------------------------------------------ json
_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _ScanContext:
    """What ``_json.make_scanner`` reads from a ``JSONDecoder``."""

    strict = True
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__

    def __init__(self, object_hook=None):
        self.object_hook = object_hook


def loads(text, object_hook=None):
    """Parse JSON (bytes or str); ``ValueError`` on anything else."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text, object_hook=object_hook, parse_constant=_CONSTANTS.__getitem__)
    text = text.strip()
    try:
        value, end = _json.make_scanner(_ScanContext(object_hook))(text, 0)
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at offset {exc.value}") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def _json_str(text):
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(text)
    return _json.encode_basestring_ascii(text)


def _dump(value, out):
    kind = type(value)
    if value is None:
        out("null")
    elif value is True or value is False:
        out("true" if value else "false")
    elif kind is str:
        out(_json_str(value))
    elif kind is int:
        out(int.__repr__(value))
    elif kind is float:
        if value != value:
            out("NaN")
        elif value in (math.inf, -math.inf):
            out("Infinity" if value > 0 else "-Infinity")
        else:
            out(float.__repr__(value))
    elif kind in (list, tuple):
        out("[")
        for i, item in enumerate(value):
            if i:
                out(",")
            _dump(item, out)
        out("]")
    elif kind is dict:
        out("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out(",")
            out(_json_str(str(key)))
            out(":")
            _dump(item, out)
        out("}")
    else:
        raise TypeError(f"cannot encode {kind.__name__} as JSON")


def dumps(value):
    parts = []
    _dump(value, parts.append)
    return "".join(parts)


# ---------------------------------------------------------------------------------- values
class NotPlain(Exception):
    """A value that is not plain data (numbers, strings, bytes, containers of them)."""


_SEQ_TAGS = {tuple: "t", set: "s", frozenset: "f"}
_FROM_TAG = {"t": tuple, "s": set, "f": frozenset}


def to_wire(value, coerce=False, depth=0):
    """Plain data -> JSON-able tagged form. ``coerce`` (in W only) accepts numpy-like values."""
    if depth > 500:
        raise NotPlain("nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [to_wire(v, coerce, depth + 1) for v in value]
    if kind in _SEQ_TAGS:
        return {_SEQ_TAGS[kind]: [to_wire(v, coerce, depth + 1) for v in value]}
    if kind is dict:
        return {
            "d": [[to_wire(k, coerce, depth + 1), to_wire(v, coerce, depth + 1)] for k, v in value.items()]
        }
    if kind is bytes:
        return {"b": value.decode("latin-1")}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if coerce and callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return to_wire(value.tolist(), False, depth + 1)
    raise NotPlain(kind.__name__)


def _untag(obj):
    if len(obj) != 1:
        raise ValueError("not a tagged value")
    ((tag, payload),) = obj.items()
    if tag in _FROM_TAG and type(payload) is list:
        return _FROM_TAG[tag](payload)
    if tag == "d" and type(payload) is list and all(type(p) is list and len(p) == 2 for p in payload):
        return dict(payload)
    if tag == "b" and type(payload) is str:
        return payload.encode("latin-1")
    if tag == "c" and type(payload) is list and len(payload) == 2:
        return complex(float(payload[0]), float(payload[1]))
    raise ValueError(f"unknown tag {tag!r}")


def from_wire(text):
    """Tagged JSON -> fresh plain data; ``ValueError`` for anything malformed."""
    try:
        return loads(text, _untag)
    except (ValueError, TypeError, RecursionError, MemoryError, UnicodeError) as exc:
        raise ValueError(f"malformed value ({type(exc).__name__})") from None


def _normalise(value):
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _close(a, b):
    return abs(a - b) <= FLOAT_TOL * max(1.0, abs(b))


def values_equal(actual, expected, strict=False):
    """``==`` after tuples become lists; an expected float matches a number within 1e-6
    absolute-or-relative error. ``strict``: scalars must also have the expected type (``1`` is
    not ``True``, ``2.0`` is not ``2``). A value too deep or too large to compare is not equal:
    the solution made it, so it is a wrong answer, never an error of the judge."""
    try:
        return _values_equal(_normalise(actual), _normalise(expected), strict)
    except (RecursionError, OverflowError, MemoryError, ValueError, TypeError):
        return False


def _values_equal(a, e, strict):
    if strict and not isinstance(e, (list, dict)) and type(a) is not type(e):
        return False
    if isinstance(e, bool) or isinstance(a, bool):
        return type(a) is type(e) and a == e if strict else bool(a == e)
    if isinstance(e, float) and isinstance(a, (int, float)):
        if math.isfinite(e) and (type(a) is int or math.isfinite(a)):
            return _close(float(a), e)  # an int beyond float range raises OverflowError: unequal
        return a == e or (math.isnan(e) and isinstance(a, float) and math.isnan(a))
    if isinstance(e, list) and isinstance(a, list):
        return len(a) == len(e) and all(_values_equal(x, y, strict) for x, y in zip(a, e))
    if isinstance(e, dict) and isinstance(a, dict):
        return a.keys() == e.keys() and all(_values_equal(a[k], e[k], strict) for k in e)
    return bool(a == e)


def _integer_token(token):
    """The canonical form of a token that spells an integer (``-12``, ``+12``, ``012``, ``12.0``,
    ``12.000``), or None. Compared as text: no digit limit, no float rounding."""
    sign = "-" if token[:1] == "-" else ""
    body = token[1:] if token[:1] in "+-" else token
    whole, dot, frac = body.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        return None
    if dot and not (frac and frac.isascii() and frac.isdigit() and not frac.strip("0")):
        return None
    digits = whole.lstrip("0") or "0"
    return digits if digits == "0" else sign + digits


def _tokens_equal(a, e):
    if a == e:
        return True
    expected_integer = _integer_token(e)
    if expected_integer is not None:  # an integer expected: that exact integer, no tolerance
        return _integer_token(a) == expected_integer
    if "_" in a or "_" in e:  # float() reads 1_000; no judge does
        return False
    try:
        fa, fe = float(a), float(e)
    except ValueError:
        return False
    return math.isfinite(fa) and math.isfinite(fe) and _close(fa, fe)


def outputs_match(actual, expected):
    """Stdout comparison: line by line, whitespace-insensitive, 1e-6 tolerance on real numbers.

    Leading/trailing blank lines and the whitespace around and between tokens are ignored;
    interior blank lines count. Where the expected token is an integer the output must be that
    integer (``300`` or ``300.0``, not ``300.0000001`` or ``3e2``); where it is a non-integer
    number, a number within 1e-6 absolute or relative error matches (as LiveCodeBench's checker).
    """
    a_lines = actual.strip().splitlines()
    e_lines = expected.strip().splitlines()
    if len(a_lines) != len(e_lines):
        return False
    for a_line, e_line in zip(a_lines, e_lines):
        a_tok, e_tok = a_line.split(), e_line.split()
        if len(a_tok) != len(e_tok) or not all(_tokens_equal(x, y) for x, y in zip(a_tok, e_tok)):
            return False
    return True


# --------------------------------------------------------------------------- os helpers
class _Libc:
    """``prctl`` and ``capset`` from libc. Built on the C-level ``_ctypes``: importing
    ``ctypes`` itself costs about as much CPU as the rest of the harness's start-up."""

    def __init__(self, ffi):
        ulong, self._u32, fn_base, handle = ffi
        self._ulong = ulong
        self._prctl = fn_base(("prctl", handle))
        try:
            self._capset = fn_base(("capset", handle))
        except AttributeError:
            self._capset = None

    def prctl(self, *args):
        return self._prctl(*[self._ulong(a) for a in args])

    def clear_capabilities(self):
        if self._capset is not None:
            header = (self._u32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
            self._capset(header, (self._u32 * 6)())  # effective, permitted, inheritable: empty


def _raw_ffi():
    import _ctypes

    class ULong(_ctypes._SimpleCData):
        _type_ = "L"

    class U32(_ctypes._SimpleCData):
        _type_ = "I"

    class Int(_ctypes._SimpleCData):
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int

    class Handle:
        _handle = _ctypes.dlopen(None)

    return ULong, U32, Function, Handle()


def _ctypes_ffi():  # pragma: no cover - only where the private _ctypes layout differs
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    class Function(ctypes._CFuncPtr):
        _flags_ = ctypes._FUNCFLAG_CDECL | ctypes._FUNCFLAG_USE_ERRNO
        _restype_ = ctypes.c_int

    return ctypes.c_ulong, ctypes.c_uint32, Function, libc


def _libc():
    for ffi in (_raw_ffi, _ctypes_ffi):
        try:
            return _Libc(ffi())
        except Exception:
            continue
    return None  # no ctypes at all: still works, less hardened


def _prctl(libc, *args):
    return -1 if libc is None else libc.prctl(*args)


def _set_signals(handler):
    for sig in _signal.valid_signals():
        if sig not in _UNCATCHABLE:
            try:  # noqa: SIM105 (contextlib costs import time)
                _signal.signal(sig, handler)
            except (OSError, ValueError, RuntimeError):
                pass


def _python_default_signals():
    _set_signals(_signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # what any Python program starts with
        _signal.signal(sig, _signal.SIG_IGN)


def _drop_capabilities(libc):
    """Leave the worker no capability, so it cannot ptrace or signal anything it does not own."""
    if libc is None:
        return
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.clear_capabilities()


def _signal_name(sig):
    return _SIGNAL_NAMES.get(sig, f"signal {sig}")


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("stdin ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send_msg(sock, obj, fds=()):
    data = dumps(obj).encode()
    if fds:
        rights = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    else:
        sock.send(data)


def _recv_msg(sock, timeout=None):
    """One message (and its fds) from the P<->Z socket; ``None`` on EOF or timeout."""
    if timeout is not None and not select.select([sock], [], [], max(0.0, timeout))[0]:
        return None, []
    data, ancillary, _flags, _addr = sock.recvmsg(1 << 16, _socket.CMSG_LEN(8 * 4))
    fds = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            count = len(payload) // 4
            fds.extend(struct.unpack(f"{count}i", payload[: 4 * count]))
    return (loads(data) if data else None), fds


def _frame(payload):
    return struct.pack(">I", len(payload)) + payload


# ---------------------------------------------------------------------------------- worker
def _frames_in(tb, filename):
    """(line, function) of the traceback entries in ``filename``, outermost first."""
    found = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            found.append((tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return found


def _describe_exception(exc, state):
    """Type, message and the innermost line of the solution where it was raised."""
    info = {"type": type(exc).__name__, "msg": ""}
    try:
        info["msg"] = str(exc)[:MAX_SHOWN]
    except BaseException:
        info["msg"] = "<unprintable message>"
    lines = state["lines"]
    frames = _frames_in(exc.__traceback__, state["filename"])
    if frames:
        line, func = frames[-1]
        info.update(line=line, func=func)
        if line and 0 < line <= len(lines):
            info["source"] = lines[line - 1].strip()[:200]
    elif isinstance(exc, SyntaxError) and exc.filename == state["filename"]:
        info["line"] = exc.lineno
    return info


def _lower(which, soft, hard=None):
    """Set a limit, never above what the sandbox already imposes (that would fail)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def _set_worker_limits(limits):
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
        _quietly(resource.setrlimit, resource.RLIMIT_STACK, (want, hard))


def _resolve(namespace, name):
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


def _worker(fds, request, state):
    """Runs in W; never returns."""
    in_r, out_w, err_w, chan = fds
    status = 70
    channel_ready = False
    try:
        os.setpgid(0, 0)
        _python_default_signals()
        os.dup2(in_r, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if chan != 3:
            os.dup2(chan, 3)
        os.set_inheritable(3, False)
        channel_ready = True
        os.closerange(4, max(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        _set_worker_limits(request["limits"])
        _prctl(state["libc"], _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _drop_capabilities(state["libc"])
        # The solution's own standard streams: fresh objects on the pipes to P.
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
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


def _send_to_parent(obj):
    _write_all(3, _frame(dumps(obj).encode()))


def _load(state, name):
    module = type(sys)(name)
    module.__file__ = state["filename"]
    module.__builtins__ = __builtins__
    sys.modules[name] = module
    if state["prelude"] is not None:
        exec(state["prelude"], module.__dict__)
    exec(state["code"], module.__dict__)
    return module


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib costs import time)
            stream.flush()
        except BaseException:
            pass


def _run_program(state):
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


def _read_request():
    header = b""
    while len(header) < 4:
        chunk = os.read(3, 4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">I", header)
    return _read_exact(3, size)


def _serve_calls(state, fn_name):
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
            reply = {"exc": _describe_exception(exc, state)}
        else:
            try:
                reply = {"ok": dumps(to_wire(result, coerce=True))}
            except (NotPlain, RecursionError) as exc:
                reply = {"not_plain": str(exc)[:100] or type(result).__name__}
        _flush_std()
        _send_to_parent(reply)


# ---------------------------------------------------------------------------- processes
def _children():
    """Pids of this process's live children (/proc/self/task/*/children where the kernel has it)."""
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        pass
    found = []
    for entry in _quietly(os.listdir, "/proc") or []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    if int(handle.read().rsplit(b")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _reap_orphans(keep=()):
    """Kill what a worker left behind: its orphans are re-parented to us (a subreaper)."""
    for _ in range(50):
        found = False
        for pid in _children():
            if pid not in keep:
                found = _quietly(os.kill, pid, _SIGKILL) is None or found
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0 or pid in keep:
                break
            found = True
        if not found:
            return
        time.sleep(0.002)


def _exit_info(status, usage):
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024.0,
    }


def _site_dirs():
    """Where the solution may import installed packages from (``-S`` left them out for speed)."""
    try:
        import site

        return [d for d in site.getsitepackages() if os.path.isdir(d)]
    except Exception:
        return []


def _compile_error(exc):
    info = {"type": type(exc).__name__, "msg": getattr(exc, "msg", None) or str(exc)}
    if isinstance(exc, SyntaxError):
        info.update(line=exc.lineno, offset=exc.offset, text=(exc.text or "").rstrip("\n")[:300])
    elif isinstance(exc, (MemoryError, RecursionError)):
        info["msg"] = "the program is too deeply nested to compile"
    return info


def _prepare(libc, public):
    """Everything workers inherit: the compiled solution (compiling executes nothing)."""
    source = public["solution"]
    state = {"libc": libc, "filename": public["filename"], "lines": source.splitlines(), "prelude": None}
    state["site_dirs"] = public["site_dirs"] if public.get("site_dirs") is not None else _site_dirs()
    if public.get("prelude"):
        state["prelude"] = compile(public["prelude"], "<prelude>", "exec", dont_inherit=True)
    state["code"] = state["compile_error"] = None
    try:
        state["code"] = compile(source, state["filename"], "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        state["compile_error"] = _compile_error(exc)
    return state


def _zygote(sock, state):
    """Z's loop: fork a worker per request, reap it, report how it ended. Never returns."""
    try:
        _prctl(state["libc"], _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # stdin (the tests) and stdout (the report) are P's alone
        os.dup2(devnull, 1)
        os.close(devnull)
        # ... and so are P's ends of the first worker's pipes (held here, its stdin never ends)
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, max(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        while True:
            msg, fds = _recv_msg(sock)
            if msg is None or msg.get("op") == "quit":
                break
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                _send_msg(sock, {"fork_error": str(exc)})
                continue
            if pid == 0:
                sock.close()
                _worker(fds, msg, state)
            _quietly(os.setpgid, pid, pid)  # as the worker does: no window where killpg misses it
            for fd in fds:
                os.close(fd)
            _send_msg(sock, {"pid": pid})
            _, status, usage = os.wait4(pid, 0)
            _quietly(os.killpg, pid, _SIGKILL)
            _reap_orphans()
            _send_msg(sock, _exit_info(status, usage))
        _reap_orphans()
        os._exit(0)
    except BaseException:
        try:
            import traceback

            _send_msg(sock, {"harness_error": traceback.format_exc(limit=8)[-4000:]})
        except BaseException:
            pass
        os._exit(70)


# ---------------------------------------------------------------------------------- parent
class _WorkerFailed(BaseException):
    """Raised through a test's check code when the worker failed: not catchable as Exception."""


class _BadTest(Exception):
    """The test itself is unusable (a bug of the task, not of the solution)."""


class _ZygoteGone(Exception):
    """Z died, stopped answering or could not fork: the remaining tests cannot run."""


class _Zygote:
    def __init__(self, sock, pid):
        self.sock, self.pid = sock, pid
        self.alive = True

    def recv(self, timeout=None):
        if not self.alive:
            return None
        try:
            msg, fds = _recv_msg(self.sock, timeout)
        except (OSError, ValueError):
            msg, fds = None, []
        for fd in fds:
            os.close(fd)
        if msg is None and timeout != 0:
            self.alive = False
        if isinstance(msg, dict) and "harness_error" in msg:
            raise RuntimeError("zygote failed:\n" + str(msg["harness_error"]))
        return msg


_ZYGOTE_LOST = {"exit": None, "signal": _SIGKILL, "cpu_s": 0.0, "peak_mb": None}


class _Worker:
    """A forked worker as P holds it: its pid, P's ends of its pipes, how its end is learnt
    (a pidfd when P is its parent, otherwise Z's report)."""

    def __init__(self, pid, fds, chan, pidfd=None, zygote=None):
        self.pid, self.fds, self.chan, self.pidfd, self.zygote = pid, fds, chan, pidfd, zygote

    def close(self):  # idempotent: every fd is closed exactly once
        while self.fds:
            _quietly(os.close, self.fds.popitem()[1])
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        if self.pidfd is not None:
            _quietly(os.close, self.pidfd)
            self.pidfd = None


def _worker_pipes():
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    chan, worker_chan = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return {"in": in_w, "out": out_r, "err": err_r}, chan, [in_r, out_w, err_w, worker_chan]


def _fork_worker(state, request):
    """Fork W directly from P; only before P has read the tests. ``None`` if not possible."""
    if not hasattr(os, "pidfd_open"):
        return None
    mine, chan, theirs = _worker_pipes()
    try:
        pid = os.fork()
    except OSError:
        pid = None
    if pid == 0:
        _worker([*theirs[:3], theirs[3].fileno()], request, state)
    if pid is not None:
        _quietly(os.setpgid, pid, pid)  # as the worker does: no window where killpg misses it
    for fd in theirs[:3]:
        os.close(fd)
    theirs[3].close()
    worker = _Worker(pid, mine, chan)
    try:
        if pid is None:
            raise OSError("fork failed")
        worker.pidfd = os.pidfd_open(pid)
    except OSError:
        if pid is not None:
            _quietly(os.kill, pid, _SIGKILL)
            _quietly(os.waitpid, pid, 0)
        worker.close()
        return None
    return worker


def _worker_from_zygote(zyg, request):
    mine, chan, theirs = _worker_pipes()
    try:
        _send_msg(zyg.sock, request, [*theirs[:3], theirs[3].fileno()])
    except OSError:
        zyg.alive = False
    finally:
        for fd in theirs[:3]:
            os.close(fd)
        theirs[3].close()
    worker = _Worker(None, mine, chan, zygote=zyg)
    msg = zyg.recv(timeout=max(5.0, request["limits"]["wall_s"])) if zyg.alive else None
    if not isinstance(msg, dict) or "pid" not in msg:
        worker.close()
        zyg.alive = False
        raise _ZygoteGone(str((msg or {}).get("fork_error", "the judge's worker process stopped responding")))
    worker.pid = msg["pid"]
    return worker


class _Run:
    """One test's worker: its pipes, its deadline, and what it said."""

    def __init__(self, worker, limits, stdin_data=b"", keep=()):
        self.worker, self.zyg, self.pid = worker, worker.zygote, worker.pid
        self.keep = set(keep)  # P's children that are not this worker's leftovers (Z)
        self.limits = limits
        self.start = time.monotonic()
        self.deadline = self.start + limits["wall_s"]
        self.kill_reason = None
        self.lost = False  # Z vanished while this worker ran
        self.exit = None
        self.out, self.err = bytearray(), bytearray()
        self.frames, self.chan_buf = [], bytearray()
        self.to_stdin = memoryview(stdin_data)
        self.fds, self.chan = worker.fds, worker.chan  # shared with the worker, closed once
        for fd in self.fds.values():
            os.set_blocking(fd, False)
        self.chan.setblocking(False)
        if not self.to_stdin:
            self._close("in")
        self.to_chan = bytearray(_frame(b"go"))

    def _close(self, name):
        fd = self.fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close_all(self):
        self.worker.close()
        self.chan = None

    def kill(self, reason):
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.pid is not None and self.exit is None:
            _quietly(os.kill, self.pid, _SIGKILL)  # the group alone could miss a worker just forked
            _quietly(os.killpg, self.pid, _SIGKILL)

    def send(self, payload):
        self.to_chan += _frame(payload)

    def _grab_frames(self):
        while len(self.chan_buf) >= 4:
            (size,) = struct.unpack(">I", self.chan_buf[:4])
            if size > self.limits["output_bytes"] + 4096:
                self.kill("output")
                self.chan_buf.clear()
                return
            if len(self.chan_buf) < 4 + size:
                return
            self.frames.append(bytes(self.chan_buf[4 : 4 + size]))
            del self.chan_buf[: 4 + size]

    def pump(self, want_frame):
        """Move data until a frame arrived (``want_frame``) or the worker is gone; enforce limits."""
        grace = None
        while True:
            if want_frame and self.frames:
                return self.frames.pop(0)
            # The exit is known only once the worker's group and orphans are dead, so every
            # pipe reaches EOF soon after: drain them all, a last error message included.
            if self.exit is not None and not self.fds.keys() & {"out", "err"} and self.chan is None:
                return None
            now = time.monotonic()
            if self.kill_reason is None and now >= self.deadline:
                self.kill("wall")
            if self.kill_reason is not None:
                grace = grace or now + 5.0
                if now >= grace:  # the exit never came: Z is gone or stopped
                    self._zygote_lost()
                    self.close_all()
                    continue
            rlist = [self.fds[n] for n in ("out", "err") if n in self.fds]
            if self.chan is not None:
                rlist.append(self.chan)
            if self.exit is None:
                rlist.append(self.zyg.sock if self.zyg is not None else self.worker.pidfd)
            wlist = [self.fds["in"]] if "in" in self.fds else []
            if self.to_chan and self.chan is not None:
                wlist.append(self.chan)
            timeout = (grace or self.deadline) - now
            readable, writable, _ = select.select(rlist, wlist, [], max(0.0, timeout))
            for ready in readable:
                self._on_readable(ready)
            for ready in writable:
                self._on_writable(ready)

    def _zygote_lost(self):
        if self.zyg is not None:
            self.zyg.alive = False
        self.lost = True
        self.kill(self.kill_reason or "zygote")
        self.exit = self.exit or dict(_ZYGOTE_LOST)

    def _reaped(self):
        """P's own child ended: collect it, then what it left behind (P is a subreaper)."""
        _, status, usage = os.wait4(self.pid, 0)
        _quietly(os.killpg, self.pid, _SIGKILL)
        _reap_orphans(self.keep)
        self.exit = _exit_info(status, usage)

    def _on_readable(self, ready):
        if self.zyg is not None and ready is self.zyg.sock:
            msg = self.zyg.recv(timeout=0)
            if isinstance(msg, dict) and "exit" in msg:
                self.exit = msg
            else:
                self._zygote_lost()
        elif self.zyg is None and ready == self.worker.pidfd:
            self._reaped()
        elif ready is self.chan:
            try:
                data = self.chan.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.chan.close()  # the worker's reference is closed again later: harmless
                self.chan = None
            else:
                self.chan_buf += data
                self._grab_frames()
        else:
            name = "out" if ready == self.fds.get("out") else "err"
            try:
                data = os.read(ready, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self._close(name)
            elif name == "out":
                self.out += data
                if len(self.out) > self.limits["output_bytes"]:
                    self.kill("output")
            elif len(self.err) < KEEP_STDERR:  # stderr is drained in full, only its head kept
                self.err += data

    def _on_writable(self, ready):
        if ready is self.chan and self.chan is not None:
            try:
                del self.to_chan[: self.chan.send(self.to_chan)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.to_chan.clear()
        elif ready == self.fds.get("in"):
            try:
                self.to_stdin = self.to_stdin[os.write(ready, self.to_stdin[: 1 << 16]) :]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the program closed its stdin: the rest is not needed
                self.to_stdin = memoryview(b"")
            if not self.to_stdin:
                self._close("in")

    def finish(self):
        """Kill what is left of the worker and wait until it has been reaped."""
        if self.exit is None:
            self.kill(self.kill_reason or "done")
            self._close("in")
            self.pump(want_frame=False)
        self.close_all()


def _decode_message(frame):
    try:
        msg = loads(frame)
    except (ValueError, RecursionError, MemoryError, UnicodeError):
        return {}
    return msg if isinstance(msg, dict) else {}


def _timing(run):
    ex = run.exit or {}
    timing = {"cpu_s": round(ex.get("cpu_s") or 0.0, 4), "wall_s": round(time.monotonic() - run.start, 4)}
    if ex.get("peak_mb") is not None:
        timing["peak_mb"] = round(ex["peak_mb"], 1)
    return timing


def _classify_end(run, limits, message=None):
    """A failure verdict from how the worker ended (limits, crash, exception), or None."""
    ex = run.exit or {}
    sig = ex.get("signal")
    if run.kill_reason == "wall":
        return {"verdict": "time_limit", "detail": "wall"}
    if run.kill_reason == "output":
        return {"verdict": "runtime_error", "detail": "output_limit"}
    if run.lost:
        return {"verdict": "runtime_error", "detail": "judge_killed"}
    if (ex.get("cpu_s") or 0.0) > limits["cpu_s"] or sig == _signal.SIGXCPU:
        return {"verdict": "time_limit", "detail": "cpu"}
    exc = _clean_exc((message or {}).get("exc"))
    if exc and exc.get("type") == "MemoryError":
        return {"verdict": "memory_limit", "error": exc}
    if sig is not None and run.kill_reason != "done":
        peak = ex.get("peak_mb") or 0.0
        if (sig == _SIGKILL and peak >= 0.8 * limits["memory_mb"]) or b"MemoryError" in run.err:
            return {"verdict": "memory_limit", "detail": _signal_name(sig)}
        return {"verdict": "runtime_error", "detail": "signal", "signal": _signal_name(sig)}
    if exc:
        return {"verdict": "runtime_error", "error": exc}
    return None


def _shown(value):
    """``repr(value)``, bounded; a placeholder for a value too deep or too large to print."""
    try:
        return repr(value)[:MAX_SHOWN]
    except (RecursionError, ValueError, MemoryError, OverflowError):
        return "<a value too deeply nested or too large to show>"


def _text(value, limit):
    return value[:limit] if isinstance(value, str) else ""


def _clean_exc(exc):
    """The worker's description of an exception, reduced to bounded plain fields (a forged
    description is plain text at worst: nothing of it is converted or printed as given)."""
    if not isinstance(exc, dict):
        return None
    clean = {"type": _text(exc.get("type"), 100) or "Exception", "msg": _text(exc.get("msg", ""), MAX_SHOWN)}
    if type(exc.get("line")) is int:
        clean["line"] = exc["line"]
    for key, limit in (("func", 100), ("source", 200)):
        if isinstance(exc.get(key), str):
            clean[key] = exc[key][:limit]
    return clean


def _finish(run, limits, outcome, message=None):
    """End the test: kill the worker, let limits and crashes override ``outcome``, add timings."""
    run.finish()
    for frame in run.frames:  # an error nobody asked for (the solution failed to load, say)
        unread = _decode_message(frame)
        if message is None and "exc" in unread:
            message = unread
    result = _classify_end(run, limits, message) or outcome
    if result["verdict"] != "pass" and run.err:
        result["stderr"] = bytes(run.err[:KEEP_STDERR]).decode("utf-8", errors="replace")[:MAX_SHOWN]
    return dict(_timing(run), **result)


def _stdio_test(launch, test, limits):
    run = launch("stdio", None, test["input"].encode())
    try:
        run.pump(want_frame=False)
        run.finish()
        message = _decode_message(run.frames[0]) if run.frames else {}
        code = run.exit.get("exit")
        actual = bytes(run.out).decode("utf-8", errors="replace")
        if code:
            outcome = {"verdict": "runtime_error", "detail": "exit_code", "exit_code": code}
        elif outputs_match(actual, test["output"]):
            outcome = {"verdict": "pass"}
        else:
            outcome = {"verdict": "wrong_answer", "actual": actual[:MAX_SHOWN], "actual_chars": len(actual)}
        return _finish(run, limits, outcome, message)
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


class _Candidate:
    """Stands for the solution's function inside trusted test code: each call goes to W."""

    def __init__(self, run):
        self._run = run
        self.calls = 0
        self.last_call = None
        self.last_result = None
        self.failure = None  # (outcome, message), latched: test code cannot swallow it

    def __call__(self, *args, **kwargs):
        if self.failure is None:
            try:
                request = dumps(to_wire((args, kwargs)))
            except (NotPlain, RecursionError):
                raise _BadTest("the test passes an argument that is not plain data") from None
            self.calls += 1
            self.last_call = _call_text(args, kwargs)
            self.last_result = None
            self._run.send(request.encode())
            reply = self._reply()
            if self.failure is None:
                return self._decode(reply)
        raise _WorkerFailed()

    def _decode(self, reply):
        if "not_plain" in reply:
            self.failure = (
                {"verdict": "wrong_answer", "detail": "not_plain", "actual_type": str(reply["not_plain"])},
                {},
            )
            raise _WorkerFailed()
        try:
            value = from_wire(reply["ok"]) if isinstance(reply.get("ok"), str) else None
        except ValueError:
            value = None
        if value is None and reply.get("ok") != "null":
            self.failure = ({"verdict": "runtime_error", "detail": "no_result"}, {})
            raise _WorkerFailed()
        self.last_result = _shown(value)
        return value

    def _reply(self):
        frame = self._run.pump(want_frame=True)
        reply = _decode_message(frame) if frame is not None else {}
        while reply.get("ready") is True:
            frame = self._run.pump(want_frame=True)
            reply = _decode_message(frame) if frame is not None else {}
        if frame is None or "exc" in reply:
            self._fail(reply)
        return reply

    def _fail(self, reply):
        outcome = {"verdict": "runtime_error", "detail": "no_result"}
        if isinstance(reply.get("exc"), dict):
            outcome = {"verdict": "runtime_error", "error": _clean_exc(reply["exc"])}
        self.failure = (outcome, reply)

    def wait_loaded(self):
        """For a test that never called the function: the solution must still load."""
        frame = self._run.pump(want_frame=True)
        reply = _decode_message(frame) if frame is not None else {}
        if reply.get("ready") is not True:
            self._fail(reply)
            raise _WorkerFailed()

    def describe(self, result):
        if self.last_call is not None:
            result["call"] = self.last_call
            if self.last_result is not None:
                result.setdefault("actual", self.last_result)
        result["calls"] = self.calls
        return result


def _call_text(args, kwargs):
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)[:MAX_SHOWN]


def _failed_outcome(run, candidate):
    outcome, message = candidate.failure
    run.finish()
    if outcome.get("detail") == "no_result" and run.exit and run.exit.get("exit") not in (None, 0):
        outcome = {"verdict": "runtime_error", "detail": "exit_code", "exit_code": run.exit["exit"]}
    return outcome, message


def _call_test(launch, test, limits):
    run = launch("call", test["fn"], b"")
    candidate = _Candidate(run)
    try:
        try:
            actual = candidate(*test.get("args", []), **test.get("kwargs", {}))
        except _WorkerFailed:
            outcome, message = _failed_outcome(run, candidate)
            return candidate.describe(_finish(run, limits, outcome, message))
        if values_equal(actual, test["expected"], test.get("strict") is True):
            return _finish(run, limits, {"verdict": "pass"})
        return _finish(run, limits, {"verdict": "wrong_answer", "actual": candidate.last_result})
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


def _assert_test(launch, test, limits):
    try:
        code = compile(test["code"], "<test>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise _BadTest(f"the test code does not compile: {exc}") from None
    run = launch("call", test["entry_point"], b"")
    candidate = _Candidate(run)
    namespace = {"__name__": "__test__", test["entry_point"]: candidate}
    message = None
    try:
        try:
            exec(code, namespace)
            namespace[test["entry_point"]] = candidate  # the code may define a stub of that name
            check = namespace.get("check")
            if callable(check):
                check(candidate)
            if candidate.failure is not None:
                raise _WorkerFailed()
            if candidate.calls == 0:
                candidate.wait_loaded()
            outcome = {"verdict": "pass"}
        except _WorkerFailed:
            outcome, message = _failed_outcome(run, candidate)
        except AssertionError as exc:
            outcome = {"verdict": "wrong_answer", "assert_line": _test_line(exc)}
        except _BadTest:
            raise
        except BaseException as exc:  # trusted test code choked on what the solution returned
            outcome = {
                "verdict": "wrong_answer",
                "assert_line": _test_line(exc),
                "test_error": type(exc).__name__,
            }
            outcome["msg"] = str(exc)[:200]
        return candidate.describe(_finish(run, limits, outcome, message))
    finally:
        run.finish()  # idempotent; also reaps the worker when the test itself was unusable


def _test_line(exc):
    frames = _frames_in(exc.__traceback__, "<test>")
    return frames[-1][0] if frames else None


_RUNNERS = {"stdio": _stdio_test, "call": _call_test, "assert": _assert_test}


def worker_request(test, limits):
    """What a worker needs to know of a test: never its data."""
    if test["kind"] == "stdio":
        return {"op": "run", "mode": "stdio", "fn": None, "limits": limits}
    return {"op": "run", "mode": "call", "fn": test.get("fn") or test.get("entry_point"), "limits": limits}


def _run_tests(tests, limits, first, zyg):
    """Run every test: the first on the pre-forked worker ``first`` if any, the rest via Z."""
    max_timeouts = limits.get("max_timeouts")
    results = []
    timeouts = 0
    for index, test in enumerate(tests):
        worker, first = first, None
        if worker is not None:
            keep = {zyg.pid} if zyg is not None else ()

            def launch(mode, fn, stdin_data, worker=worker, keep=keep):
                return _Run(worker, limits, stdin_data, keep)

        else:

            def launch(mode, fn, stdin_data):
                request = {"op": "run", "mode": mode, "fn": fn, "limits": limits}
                return _Run(_worker_from_zygote(zyg, request), limits, stdin_data)

        if worker is None and (zyg is None or not zyg.alive):
            result = {"verdict": "runtime_error", "detail": "judge_killed"}
        elif max_timeouts is not None and timeouts >= max_timeouts:
            result = {"verdict": "skipped"}  # after a timeout, a slow program only burns time
        else:
            try:
                result = _RUNNERS[test["kind"]](launch, test, limits)
            except _BadTest as exc:
                result = {"verdict": "judge_error", "detail": str(exc)}
            except _ZygoteGone as exc:  # before any worker ran it cannot be the solution's doing
                result = {"verdict": "runtime_error", "detail": "judge_killed"}
                if index == 0:
                    result = {"verdict": "judge_error", "detail": str(exc)}
        if worker is not None:
            worker.close()
        result["index"] = index
        timeouts += result["verdict"] == "time_limit"
        results.append(result)
    return results


def _scrub_stdin():
    """Empty stdin if it is a file: another process of the sandbox (its init) may hold it open,
    and the solution could read the tests through ``/proc/<pid>/fd/0``. Runs before any
    worker exists. A pipe needs nothing: reading it consumed the data."""
    if os.fstat(0).st_mode & 0o170000 != 0o100000:
        return True
    try:
        os.ftruncate(0, 0)
        return True
    except OSError:
        pass
    try:
        fd = os.open("/proc/self/fd/0", os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        return True
    except OSError:
        return False


def _harden(libc):
    notes = []
    if _prctl(libc, _PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        notes.append("harness could not make itself non-dumpable (no ctypes or prctl)")
    _prctl(libc, _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # a direct worker's orphans come back to P
    _set_signals(_signal.SIG_IGN)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big-integer answers are legitimate
    return notes


def _preload(names):
    """Import stdlib modules the solution or the tests will import, once, before forking:
    every worker then inherits them instead of importing them again."""
    for name in names:
        if name in PRELOADABLE:
            try:  # noqa: SIM105 (contextlib costs import time)
                __import__(name)
            except Exception:
                pass


def _read_rest(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _start_zygote(state):
    parent_sock, zygote_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        _zygote(zygote_sock, state)
    zygote_sock.close()
    return _Zygote(parent_sock, pid)


def _start_workers(state, public):
    """Before the tests are read: fork the first test's worker, and Z for any further tests."""
    first = zyg = None
    plan = public["workers"]
    gc.freeze()  # inherited objects stay out of the collector: fewer copy-on-write faults
    if plan:
        first = _fork_worker(
            state, {"op": "run", "mode": plan[0][0], "fn": plan[0][1], "limits": public["limits"]}
        )
    if len(plan) > (1 if first is not None else 0):
        zyg = _start_zygote(state)
    return first, zyg


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    # Lazy imports (by test code, say) must never see files the solution wrote to the scratch dir.
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    libc = _libc()
    notes = _harden(libc)
    report = {
        "version": REPORT_VERSION,
        "notes": notes,
        "tests": [],
        "compile_error": None,
        "harness_error": None,
    }
    first = zyg = None
    try:
        (size,) = struct.unpack(">Q", _read_exact(0, 8))
        public = loads(_read_exact(0, size))  # the solution and a plan of the workers: not secret
        _preload(public.get("preload") or ())
        state = _prepare(libc, public)
        report["compile_error"] = state["compile_error"]
        if state["compile_error"] is None:
            first, zyg = _start_workers(state, public)
        spec = loads(_read_rest(0))  # the tests: read only now, after every fork that needs no tests
        if not _scrub_stdin():
            notes.append("stdin could not be cleared: the tests may be readable by the solution")
        os.close(0)
        if state["compile_error"] is None:
            plan = [[r["mode"], r["fn"]] for r in (worker_request(t, None) for t in spec["tests"])]
            if plan != public["workers"]:
                raise RuntimeError("the worker plan does not match the tests")
            report["tests"] = _run_tests(spec["tests"], public["limits"], first, zyg)
            first = None
    except BaseException:
        import traceback

        report["harness_error"] = traceback.format_exc(limit=8)[-4000:]
    if first is not None:  # never used: the tests could not be read
        _quietly(os.kill, first.pid, _SIGKILL)
        first.close()
    if zyg is not None:
        _quietly(_send_msg, zyg.sock, {"op": "quit"})
    _reap_orphans()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_s"] = {
        "harness": own.ru_utime + own.ru_stime,
        "zygote_and_workers": children.ru_utime + children.ru_stime,
    }
    _write_all(1, dumps(report).encode())
    os._exit(0)


if __name__ == "__main__":
    main()
