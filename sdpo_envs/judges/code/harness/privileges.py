"""What a harness process may do: ``prctl`` (dumpable, subreaper, no_new_privs),
capabilities and signal dispositions."""

import _signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Callable
    from typing import Any

    # (unsigned long type, uint32 type, C function pointer type, library handle), see _Libc
    Ffi = tuple[Any, Any, Any, Any]

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_UNCATCHABLE = {_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD}


class _Libc:
    """``prctl`` and ``capset`` from libc. Built on the C-level ``_ctypes``: importing
    ``ctypes`` itself costs about as much CPU as the rest of the harness's start-up."""

    def __init__(self, ffi: "Ffi") -> None:
        ulong, self._u32, fn_base, handle = ffi
        self._ulong = ulong
        self._prctl = fn_base(("prctl", handle))
        try:
            self._capset = fn_base(("capset", handle))
        except AttributeError:
            self._capset = None

    def prctl(self, *args: int) -> int:
        return self._prctl(*[self._ulong(a) for a in args])

    def clear_capabilities(self) -> None:
        if self._capset is not None:
            header = (self._u32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
            self._capset(header, (self._u32 * 6)())  # effective, permitted, inheritable: empty


def _raw_ffi() -> "Ffi":
    import _ctypes  # here, not at the top: without it load_libc falls back, then runs unhardened

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
        _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]  # this process's own symbols

    return ULong, U32, Function, Handle()


def _ctypes_ffi() -> "Ffi":  # pragma: no cover - only where the private _ctypes layout differs
    import ctypes  # the slow public module: only when the private layout differs

    libc = ctypes.CDLL(None, use_errno=True)

    class Function(ctypes._CFuncPtr):  # type: ignore[name-defined]
        _flags_ = ctypes._FUNCFLAG_CDECL | ctypes._FUNCFLAG_USE_ERRNO  # type: ignore[attr-defined]
        _restype_ = ctypes.c_int

    return ctypes.c_ulong, ctypes.c_uint32, Function, libc


def load_libc() -> "_Libc | None":
    for ffi in (_raw_ffi, _ctypes_ffi):
        try:
            return _Libc(ffi())
        except Exception:
            continue
    return None  # no ctypes at all: still works, less hardened


def prctl(libc: "_Libc | None", *args: int) -> int:
    return -1 if libc is None else libc.prctl(*args)


def set_signals(handler: "Callable[[int, Any], Any] | int") -> None:
    for sig in _signal.valid_signals():
        if sig not in _UNCATCHABLE:
            try:  # noqa: SIM105 (contextlib costs import time)
                _signal.signal(sig, handler)
            except (OSError, ValueError, RuntimeError):
                pass


def python_default_signals() -> None:
    set_signals(_signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # what any Python program starts with
        _signal.signal(sig, _signal.SIG_IGN)


def drop_capabilities(libc: "_Libc | None") -> None:
    """Leave the worker no capability, so it cannot ptrace or signal anything it does not own."""
    if libc is None:
        return
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.clear_capabilities()
