"""Find the final answer in a completion: the strict extraction policy of ``sdpo/Math-v0``.

Policy (no fallback to the raw text, ever):

* Reasoning is not an answer. If the completion has a ``</think>``, only the text after the
  last one is searched; a ``<think>`` that is never closed leaves no final answer.
* ``boxed`` format (default): the answer is the content of the last top-level
  ``\\boxed{...}`` (``\\fbox{...}`` counts as a box too). Several boxes are allowed only if
  they all hold the same text (whitespace aside): different boxed values are a hedge and
  a ``format_error``. Boxes that wrap the whole answer (``\\boxed{\\boxed{2}}``) are
  unwrapped, as math-verify reads them (``unwrap_nested=False`` refuses them); a box inside
  other content, an empty box, an unclosed box and ``\\boxed`` without braces are
  ``format_error``.
* ``tag`` format: the same rules for the last ``<answer>...</answer>`` (tag name
  configurable); ``$...$``, ``\\(...\\)`` or a single ``\\boxed{...}`` around the whole
  content are unwrapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdpo_envs.tags import tag_spans

BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Extraction:
    """The answer to grade, or the ``problem`` that stops grading (then ``answer`` is None).

    ``problem`` is one of ``no_answer``, ``several_answers``, ``empty_answer``,
    ``unclosed_answer``, ``malformed_box``, ``nested_box``, ``unclosed_thinking``.
    ``found`` lists every candidate seen, for feedback.
    """

    answer: str | None
    problem: str | None = None
    found: tuple[str, ...] = ()


def final_section(text: str) -> str | None:
    """The part of a completion after its reasoning; None if a ``<think>`` is never closed."""
    if _THINK_CLOSE in text:
        return text[text.rindex(_THINK_CLOSE) + len(_THINK_CLOSE) :]
    if _THINK_OPEN in text:
        return None
    return text


def _closing_brace(text: str, open_index: int) -> int:
    """Index of the ``}`` matching ``text[open_index] == "{"``, or -1; ``\\{``/``\\}`` don't count."""
    depth, i = 0, open_index
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _box_content(content: str) -> str | None:
    """What a box wrapping all of ``content`` holds, or None if no box wraps all of it."""
    match = BOX_COMMAND.match(content)
    if not match:
        return None
    brace = content.find("{", match.end())
    if (
        brace < 0
        or content[match.end() : brace].strip()
        or _closing_brace(content, brace) != len(content) - 1
    ):
        return None
    return content[brace + 1 : -1].strip()


_MAX_UNWRAP = 4  # deeper stacks of boxes stay a nested_box (and cost no quadratic scan)


def _strip_boxes(content: str) -> str:
    """``content`` without the boxes that wrap all of it (``\\boxed{\\boxed{2}}`` -> ``2``)."""
    for _ in range(_MAX_UNWRAP):
        inner = _box_content(content)
        if inner is None:
            break
        content = inner
    return content


def _choose(candidates: list[str], unwrap_nested: bool) -> Extraction:
    """Apply the shared rules to the candidates found, in order of appearance."""
    found = tuple(candidates)
    if not candidates:
        return Extraction(None, "no_answer", found)
    if len({re.sub(r"\s+", "", c) for c in candidates}) > 1:
        return Extraction(None, "several_answers", found)
    answer = candidates[-1].strip()
    if unwrap_nested:
        answer = _strip_boxes(answer)
    if not answer:
        return Extraction(None, "empty_answer", found)
    if BOX_COMMAND.search(answer):
        return Extraction(None, "nested_box", found)
    return Extraction(answer, None, found)


def extract_boxed(text: str, unwrap_nested: bool = True) -> Extraction:
    """The last top-level ``\\boxed{...}`` of the final section, under the policy above."""
    section = final_section(text)
    if section is None:
        return Extraction(None, "unclosed_thinking")
    candidates: list[str] = []
    position = 0
    while match := BOX_COMMAND.search(section, position):
        brace = match.end()
        while brace < len(section) and section[brace] in " \t":
            brace += 1
        if brace >= len(section) or section[brace] != "{":
            return Extraction(None, "malformed_box", tuple(candidates))
        end = _closing_brace(section, brace)
        if end < 0:
            return Extraction(None, "unclosed_answer", tuple(candidates))
        candidates.append(section[brace + 1 : end])
        position = end + 1
    return _choose(candidates, unwrap_nested)


_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _unwrap(content: str) -> str:
    content = content.strip()
    for left, right in _DELIMITERS:
        if len(content) > len(left) + len(right) and content.startswith(left) and content.endswith(right):
            content = content[len(left) : -len(right)].strip()
            break
    inner = _box_content(content)
    return content if inner is None else inner


def extract_tagged(text: str, tag: str = "answer", unwrap_nested: bool = True) -> Extraction:
    """The content of the last ``<tag>...</tag>`` of the final section, under the policy above."""
    section = final_section(text)
    if section is None:
        return Extraction(None, "unclosed_thinking")
    spans = tag_spans(section, tag)
    tail = section[spans[-1][2] :] if spans else section
    if f"<{tag}>" in tail:
        return Extraction(None, "unclosed_answer", tuple(section[b:e] for _, b, e in spans))
    return _choose([_unwrap(section[b:e]) for _, b, e in spans], unwrap_nested)
