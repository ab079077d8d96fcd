"""Find the final answer in a completion: the strict extraction policy of ``sdpo/Math-v0``.

Policy (no fallback to the raw text, ever):

* Reasoning is not an answer. If the completion has a ``</think>``, only the text after the
  last one is searched; a ``<think>`` that is never closed leaves no final answer.
* ``boxed`` format (default): the answer is the content of the last top-level
  ``\\boxed{...}`` (``\\fbox{...}`` counts as a box too). Several boxes are allowed only if
  they all hold the same text (whitespace aside): different boxed values are a hedge and
  a ``format_error``. A box inside a box, an empty box, an unclosed box and ``\\boxed``
  without braces are ``format_error`` too.
* ``tag`` format: the same rules for the last ``<answer>...</answer>`` (tag name
  configurable); ``$...$``, ``\\(...\\)`` or a single ``\\boxed{...}`` around the whole
  content are unwrapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def _choose(candidates: list[str]) -> Extraction:
    """Apply the shared rules to the candidates found, in order of appearance."""
    found = tuple(candidates)
    if not candidates:
        return Extraction(None, "no_answer", found)
    if len({re.sub(r"\s+", "", c) for c in candidates}) > 1:
        return Extraction(None, "several_answers", found)
    answer = candidates[-1].strip()
    if not answer:
        return Extraction(None, "empty_answer", found)
    if BOX_COMMAND.search(answer):
        return Extraction(None, "nested_box", found)
    return Extraction(answer, None, found)


def extract_boxed(text: str) -> Extraction:
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
    return _choose(candidates)


_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _unwrap(content: str) -> str:
    content = content.strip()
    for left, right in _DELIMITERS:
        if len(content) > len(left) + len(right) and content.startswith(left) and content.endswith(right):
            content = content[len(left) : -len(right)].strip()
            break
    match = BOX_COMMAND.match(content)
    if match:
        brace = content.find("{", match.end())
        if (
            brace >= 0
            and not content[match.end() : brace].strip()
            and _closing_brace(content, brace) == len(content) - 1
        ):
            content = content[brace + 1 : -1].strip()
    return content


def extract_tagged(text: str, tag: str = "answer") -> Extraction:
    """The content of the last ``<tag>...</tag>`` of the final section, under the policy above."""
    section = final_section(text)
    if section is None:
        return Extraction(None, "unclosed_thinking")
    opening, closing = f"<{tag}>", f"</{tag}>"
    matches = list(re.finditer(re.escape(opening) + r"(.*?)" + re.escape(closing), section, flags=re.DOTALL))
    tail = section[matches[-1].end() :] if matches else section
    if opening in tail:
        return Extraction(None, "unclosed_answer", tuple(m.group(1) for m in matches))
    return _choose([_unwrap(m.group(1)) for m in matches])
