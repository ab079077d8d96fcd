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
the expected answer uses it too. A percent is math-verify's to read (``10\\%`` matches 0.1
and 10) unless the env's ``percent_as_unit`` flag drops a trailing percent sign from both
sides (``4\\%`` then matches 4, not 0.04). A full stop after the value (``8717446.``) is
dropped. Answers too long, too deeply nested or with too many digits to check are refused
before parsing (``screen_size``): the model's ``format_error``. Accepted on purpose, because
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
_TRAILING_PERIOD = re.compile(r"(?<=[0-9A-Za-z}])\s*\.\s*$")


def strip_percent(text: str) -> str:
    """Drop one trailing percent sign (``\\%`` or ``%``): a percent is read as a unit."""
    return _TRAILING_PERCENT.sub("", text)


def strip_trailing_period(text: str) -> str:
    """Drop a sentence's full stop after the value (``8717446.``), as people and
    reasoning-gym's scorers read it; an ellipsis or a decimal point inside stays."""
    return _TRAILING_PERIOD.sub("", text)


# What the checker is asked to parse at all. Longer, deeper or wider answers are refused
# before parsing: SymPy's recursion and evaluation would otherwise run into the checker's
# timeout, which is a fault of the answer, not of the judge.
MAX_ANSWER_CHARS = 1000
MAX_NESTING = 12
MAX_DIGITS = 4300  # Python's int() refuses longer digit strings by default


def _nesting(text: str) -> int:
    depth = deepest = 0
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth = max(0, depth - 1)
    return deepest


def _longest_digit_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"\d+", text)), default=0)


def screen_size(answer: str, gold: str) -> Rejection | None:
    """Why ``answer`` is too long, too deep or holds too long a number to be checked
    (limits widened to whatever ``gold`` itself needs), or None."""
    digits = _longest_digit_run(answer)
    if digits > MAX_DIGITS:
        return Rejection(
            "too_many_digits",
            "format_error",
            f"it holds a number of {digits} digits, more than the {MAX_DIGITS} the checker reads",
        )
    depth, limit = _nesting(answer), max(MAX_NESTING, _nesting(gold) + 2)
    if depth > limit:
        return Rejection(
            "too_deep",
            "format_error",
            f"it nests brackets or braces {depth} levels deep (at most {limit}); box the simplified value",
        )
    limit = max(MAX_ANSWER_CHARS, 2 * len(gold))
    if len(answer) > limit:
        return Rejection(
            "too_long",
            "format_error",
            f"it is {len(answer)} characters long, more than the {limit} a final answer may have; "
            "box the simplified value",
        )
    return None


def screen(answer: str, gold: str) -> Rejection | None:
    """The first rule ``answer`` breaks (and ``gold`` does not), with its message filled in."""
    for rule in RULES:
        match = rule.pattern.search(answer)
        if match and not rule.pattern.search(gold):
            shown = match.group(0).strip() or match.group(0)
            r = rule.rejection
            return Rejection(r.code, r.verdict, r.message.replace("{match}", shown))
    return None
