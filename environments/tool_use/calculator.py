"""The ``calculate`` tool: arithmetic on an AST whitelist, never ``eval``."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from .tools import ToolError

MAX_EXPRESSION_CHARS = 300
MAX_MAGNITUDE = 1e100  # bigger intermediate values are refused before they can eat memory or time
MAX_EXPONENT = 64

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _check(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"unsupported value {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError("a number in the calculation is too large")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponents are limited to ±{MAX_EXPONENT}")
        return _check(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _check(_FUNCTIONS[node.func.id](*[_eval(arg) for arg in node.args]))
    shown = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
    raise ToolError(
        f"unsupported syntax {shown!r}: use numbers, + - * / // % **, parentheses, "
        f"{', '.join(_FUNCTIONS)} and the constants pi, e"
    )


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; floats are rounded to 12 significant digits."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"invalid expression: {exc.msg}") from None
    value = _eval(tree)
    if isinstance(value, float):
        # 0.1 + 0.2 reads 0.3: the model copies results into later steps, so keep them short.
        value = float(f"{value:.12g}")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
    return value


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: The expression, e.g. "(12.5 + 3) * 4 / 7". Allowed: numbers, + - * / // % **, parentheses, the functions sqrt, abs, round, min, max, log, exp and the constants pi and e.
    """
    return evaluate(expression)
