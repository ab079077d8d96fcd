"""Values checked against declared types: an env argument or a config field given from text
(``--env-arg reveal_answer=maybe``, ``--set beta=x``, a YAML file) is refused with the name
and the expected type, instead of being carried into a run that misreads it.

>>> coerce("check_timeout_s", "1e-3", float)  # YAML reads 1e-3 as text; a float field takes it
0.001
>>> coerce("reveal_answer", "maybe", bool)
Traceback (most recent call last):
...
TypeError: reveal_answer expects a boolean (true or false), got 'maybe' (str)
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import types
import typing
from typing import Any

_NAMES = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}
_CONTAINERS: dict[Any, type | tuple[type, ...]] = {
    list: list,
    tuple: (list, tuple),
    set: (list, set),
    frozenset: (list, set, frozenset),
    dict: dict,
    abc.Mapping: dict,
    abc.Sequence: (list, tuple),
    abc.Iterable: (list, tuple),
    abc.Collection: (list, tuple),
}


class _Mismatch(Exception):
    pass


def describe(annotation: Any) -> str:
    """A reader's name for a type: ``an integer or none``, ``one of 'boxed', 'tag'``."""
    if annotation is type(None) or annotation is None:
        return "none"
    if annotation in _NAMES:
        return _NAMES[annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin in _CONTAINERS:
        return "a mapping" if _CONTAINERS[origin] is dict else "a list"
    return getattr(annotation, "__name__", str(annotation))


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` declares it, or ``TypeError`` naming ``name`` and the type.

    Lossless readings only: an integer (or a number written as text) where a float is declared,
    a number where a string is; never a string where a boolean is. Types it cannot check
    (``Any``, classes of objects a text value cannot be) accept any value of their kind.
    """
    try:
        return _coerce(value, annotation)
    except _Mismatch:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise TypeError(
            f"{name} expects {describe(annotation)}, got {shown} ({type(value).__name__})"
        ) from None


def _coerce(value: Any, annotation: Any) -> Any:
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, typing.TypeVar):
        return value
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise _Mismatch
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        for member in typing.get_args(annotation):
            try:
                return _coerce(value, member)
            except _Mismatch:
                continue
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is float:
        return _as_float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `--set run_name=2024`: YAML read a number, the text is the same
        raise _Mismatch
    if origin in _CONTAINERS or annotation in _CONTAINERS:
        return _coerce_container(value, origin or annotation, typing.get_args(annotation))
    if origin is abc.Callable or annotation is abc.Callable:
        if callable(value):
            return value
        raise _Mismatch
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise _Mismatch
    return value  # a form this checker does not know: the callee decides


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _Mismatch from None
    raise _Mismatch


def _coerce_container(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if not isinstance(value, _CONTAINERS[origin]):
        raise _Mismatch
    if _CONTAINERS[origin] is dict:
        if len(args) == 2:
            return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
        return value
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        items = [_coerce(item, args[0]) for item in value]
        return type(value)(items) if isinstance(value, (tuple, set, frozenset)) else items
    return value


def resolved_hints(function: Any) -> dict[str, Any]:
    """The parameter annotations of ``function`` that resolve (names only imported for type
    checking stay unchecked rather than failing the check)."""
    try:
        return typing.get_type_hints(function)
    except Exception:
        hints = {}
        for name, annotation in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = typing.get_type_hints(_Holder(name, annotation, function))[name]
            except Exception:
                continue
        return hints


class _Holder:
    """One annotation, with its function's globals, for ``get_type_hints`` to resolve alone."""

    def __init__(self, name: str, annotation: Any, function: Any) -> None:
        self.__annotations__ = {name: annotation}
        self.__globals__ = getattr(function, "__globals__", {})
        self.__module__ = getattr(function, "__module__", None)


def coerce_fields(owner: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` read as the class ``owner`` declares its fields (``1e-5`` text as a float), or
    ``ValueError`` naming the field and its type (``beta=abc`` is no number); names the class
    does not declare pass through unchanged."""
    hints = typing.get_type_hints(owner)
    out = dict(values)
    for name, value in values.items():
        if name in hints:
            try:
                out[name] = coerce(f"{owner.__name__} field {name}", value, hints[name])
            except TypeError as exc:
                raise ValueError(str(exc)) from None
    return out
