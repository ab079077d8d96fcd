"""How P compares a worker's result (``values_equal``) or stdout (``outputs_match``) with
the expected one."""

import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from typing import Any

FLOAT_TOL = 1e-6


def _normalise(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= FLOAT_TOL * max(1.0, abs(b))


def values_equal(actual: object, expected: object, strict: bool = False) -> bool:
    """``==`` after tuples become lists; an expected float matches a number within 1e-6
    absolute-or-relative error. ``strict``: scalars must also have the expected type (``1`` is
    not ``True``, ``2.0`` is not ``2``). A value too deep or too large to compare is not equal:
    the solution made it, so it is a wrong answer, never an error of the judge."""
    try:
        return _values_equal(_normalise(actual), _normalise(expected), strict)
    except (RecursionError, OverflowError, MemoryError, ValueError, TypeError):
        return False


def _values_equal(a: "Any", e: "Any", strict: bool) -> bool:
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


def _integer_token(token: str) -> "str | None":
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


def _tokens_equal(a: str, e: str) -> bool:
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


def outputs_match(actual: str, expected: str) -> bool:
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
