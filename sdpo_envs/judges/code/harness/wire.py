"""What crosses a process boundary: JSON, and the tagged values of P<->W calls.

JSON is parsed and written with the C accelerator ``_json`` alone (the ``json`` package would
import ``re``). Values crossing P<->W are JSON with tags for what JSON lacks: ``{"t": [...]}``
tuple, ``{"s": [...]}`` set, ``{"f": [...]}`` frozenset, ``{"d": [[k, v], ...]}`` dict,
``{"b": "latin-1 text"}`` bytes, ``{"c": [re, im]}`` complex; NaN and infinities as JSON
extensions. Decoding builds fresh plain data: no Python syntax is parsed, nothing executed.
"""

import math

try:
    import _json
except ImportError:  # pragma: no cover - not CPython: the json package does the same, slower
    _json = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Callable
    from typing import Any

MAX_SHOWN = 1000  # characters of an actual output / result kept per failing test
KEEP_STDERR = 2000

_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _ScanContext:
    """What ``_json.make_scanner`` reads from a ``JSONDecoder``."""

    strict = True
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__

    def __init__(self, object_hook: "Callable[[dict[str, Any]], Any] | None" = None) -> None:
        self.object_hook = object_hook


def loads(
    text: "str | bytes | bytearray", object_hook: "Callable[[dict[str, Any]], Any] | None" = None
) -> "Any":
    """Parse JSON (bytes or str); ``ValueError`` on anything else."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if _json is None:  # pragma: no cover
        import json  # only without the accelerator, which CPython always has

        return json.loads(text, object_hook=object_hook, parse_constant=_CONSTANTS.__getitem__)
    text = text.strip()
    try:
        value, end = _json.make_scanner(_ScanContext(object_hook))(text, 0)  # type: ignore[arg-type]
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at offset {exc.value}") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def _json_str(text: str) -> str:
    if _json is None:  # pragma: no cover
        import json  # only without the accelerator, which CPython always has

        return json.dumps(text)
    return _json.encode_basestring_ascii(text)


def _dump(value: "Any", out: "Callable[[str], object]") -> None:
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


def dumps(value: object) -> str:
    """JSON text of plain data (``None``, bools, numbers, strings, lists, tuples, dicts)."""
    parts: list[str] = []
    _dump(value, parts.append)
    return "".join(parts)


class NotPlain(Exception):
    """A value that is not plain data (numbers, strings, bytes, containers of them)."""


_SEQ_TAGS: "dict[type, str]" = {tuple: "t", set: "s", frozenset: "f"}
_FROM_TAG = {"t": tuple, "s": set, "f": frozenset}


def to_wire(value: "Any", coerce: bool = False, depth: int = 0) -> "Any":
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


def _untag(obj: "dict[str, Any]") -> object:
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


def from_wire(text: "str | bytes") -> "Any":
    """Tagged JSON -> fresh plain data; ``ValueError`` for anything malformed."""
    try:
        return loads(text, _untag)
    except (ValueError, TypeError, RecursionError, MemoryError, UnicodeError) as exc:
        raise ValueError(f"malformed value ({type(exc).__name__})") from None


def decode_message(frame: bytes) -> "dict[str, Any]":
    """A message frame's JSON object; ``{}`` for anything else (a worker's frames are untrusted)."""
    try:
        msg = loads(frame)
    except (ValueError, RecursionError, MemoryError, UnicodeError):
        return {}
    return msg if isinstance(msg, dict) else {}
