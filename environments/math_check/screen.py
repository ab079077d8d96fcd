"""Strict checks on an extracted answer, where math-verify alone is too lenient.

math-verify reads the *last* value of many constructs and drops what it cannot parse, so
some answers pass that do not state the expected value (measured with math-verify 0.9,
expected answer 4 or 5):

* ``\\boxed{4 \\text{ (or } 5)}``, ``\\boxed{4 \\lor 5}``, ``\\boxed{4 \\\\ 5}`` are read as 5;
* ``\\boxed{\\neq 4}``, ``\\boxed{\\not 4}``, ``\\boxed{\\approx 4}``, ``\\boxed{\\le 4}`` as 4;
* ``\\boxed{2 2}`` as 4 and ``\\boxed{4\\phantom{5}}`` (shows "4") as 9;
* ``\\boxed{4_{5}}`` (4 in base 5?) as 4;
* ``\\boxed{4\\%}`` matches both 4 and 0.04.

So an answer is screened before it is checked: each rule below rejects a construct unless
the expected answer uses it too, and a trailing percent sign is treated as a unit and
dropped from both sides (``4\\%`` then matches 4, not 0.04). Accepted on purpose, because
they state the value: ``\\text{4}``, ``\\mathbf{4}``, ``4 \\text{ apples}``, ``\\$4``,
``4^\\circ``, ``x = 4``, ``2+2``, ``\\frac{8}{2}``. Sets, tuples and ``\\pm`` are left to
math-verify, which does not equate them with a single value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CMD_END = r"(?![A-Za-z])"


@dataclass(frozen=True)
class Rejection:
    code: str
    verdict: str  # "format_error" or "wrong_answer"
    message: str  # model-facing; "{match}" is replaced by the offending text


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    rejection: Rejection


def _rule(pattern: str, code: str, verdict: str, message: str) -> _Rule:
    return _Rule(re.compile(pattern), Rejection(code, verdict, message))


RULES: tuple[_Rule, ...] = (
    _rule(
        r"\\(?:[hv]?phantom|smash|color|textcolor|colorbox|fcolorbox|[bx]?cancel|sout|[lr]lap|clap"
        r"|math[lrc]lap|[hv]space|m?kern|[mh]skip|raisebox|scalebox|resizebox|require|href|url|tag"
        r"|label|html[A-Za-z]*|class|style|cssId|def|newcommand|renewcommand|let)" + _CMD_END,
        "hidden_content",
        "format_error",
        "it uses `{match}`, which hides, recolours or redefines what the box shows; box the plain value",
    ),
    _rule(
        r"\\\\|\\newline" + _CMD_END + r"|(?<!\\)&|\\begin\{",
        "several_lines",
        "format_error",
        "it spans several lines or cells (`{match}`); box a single value",
    ),
    _rule(
        r"\bor\b|\\(?:lor|vee|mid)" + _CMD_END + r"|\beither\b",
        "alternatives",
        "wrong_answer",
        "it offers alternatives (`{match}`); commit to one answer",
    ),
    _rule(
        r"\\(?:not|notin|neq|ne|approx|thickapprox|sim|simeq|backsim|ncong|nless|ngtr)" + _CMD_END,
        "not_a_value",
        "wrong_answer",
        "it negates or approximates (`{match}`) instead of stating the value",
    ),
    _rule(
        r"^\s*(?:<|>|\\(?:le|leq|leqslant|ge|geq|geqslant|lt|gt|ll|gg|equiv|propto|cong)" + _CMD_END + ")",
        "not_a_value",
        "wrong_answer",
        "it starts with a relation (`{match}`) instead of stating the value",
    ),
    _rule(
        r"\d(?:\s|~|\\[,;:! ]|\\q?quad" + _CMD_END + r"|\\enspace|\\thinspace)+\d",
        "spaced_digits",
        "format_error",
        "digits separated by spacing (`{match}`) are ambiguous; write the number without spaces (1000 or 1,000)",
    ),
    _rule(
        r"\d\s*_",
        "number_subscript",
        "format_error",
        "a subscript on a number (`{match}`) is ambiguous; box the plain value",
    ),
)

_TRAILING_PERCENT = re.compile(r"(?:\s|~|\\[,;:! ])*\\?%\s*$")


def strip_percent(text: str) -> str:
    """Drop one trailing percent sign (``\\%`` or ``%``): a percent is read as a unit."""
    return _TRAILING_PERCENT.sub("", text)


def screen(answer: str, gold: str) -> Rejection | None:
    """The first rule ``answer`` breaks (and ``gold`` does not), with its message filled in."""
    for rule in RULES:
        match = rule.pattern.search(answer)
        if match and not rule.pattern.search(gold):
            shown = match.group(0).strip() or match.group(0)
            r = rule.rejection
            return Rejection(r.code, r.verdict, r.message.replace("{match}", shown))
    return None
