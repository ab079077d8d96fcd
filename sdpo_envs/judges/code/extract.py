"""Find the program in a model's answer.

Policy (what the model is told, and what the judge does):

* The solution is the **last complete fenced code block** whose info string is
  ``python``, ``py``, ``python3`` or empty (```` ``` ````). Blocks in other languages
  (```` ```text ````, ```` ```bash ````) are ignored; an earlier block is taken to be a draft
  the answer later revised.
* Fences follow CommonMark: a line of at least three backticks (or tildes), indented by at
  most three spaces, closed by a line of the same character at least as long.
* ``<think> ... </think>`` sections are reasoning, not the answer, and are skipped (as is
  everything before a lone ``</think>``, for chat templates that open it in the prompt).
* ``format_error`` when there is no such block, when the answer ends inside an unclosed
  fence or an unclosed ``<think>`` (the answer was truncated: judging an earlier draft would
  be misleading), or when the chosen block is empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...tags import THINK_OPEN, strip_thinking

PYTHON_INFO = frozenset({"python", "py", "python3", ""})
_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_CLOSE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*$")

FENCE_HINT = "Put your complete solution in a single fenced code block:\n```python\n...\n```"


@dataclass(frozen=True)
class Extraction:
    """The extracted program, or why there is none (a model-facing ``format_error`` text)."""

    code: str | None
    error: str | None = None
    blocks: int = 0  # complete Python blocks found

    @property
    def ok(self) -> bool:
        return self.code is not None


@dataclass(frozen=True)
class _Block:
    info: str
    start_line: int
    lines: list[str]
    closed: bool


def _closes(line: str, fence: str) -> bool:
    match = _CLOSE.match(line)
    return match is not None and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence)


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):  # inline code, not a fence
            i += 1
            continue
        fence, info = match["fence"], (match["info"].split() or [""])[0].lower()
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        blocks.append(_Block(info=info, start_line=i + 1, lines=lines[i + 1 : j], closed=j < len(lines)))
        i = j + 1
    return blocks


def extract_code(answer: str) -> Extraction:
    """The solution in ``answer`` per the module's policy."""
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {type(answer).__name__}")
    text = strip_thinking(answer)
    if THINK_OPEN in text:
        return Extraction(
            None,
            "Format error: the answer ended inside a <think> section, so it contains no final "
            f"solution (it looks truncated). {FENCE_HINT}",
        )
    blocks = [b for b in _blocks(text) if b.info in PYTHON_INFO]
    if blocks and not blocks[-1].closed:
        return Extraction(
            None,
            f"Format error: the code block that starts on line {blocks[-1].start_line} of your answer "
            "is never closed with ``` (the answer looks truncated). Write a shorter answer that ends "
            "with the closing fence.",
            blocks=len(blocks) - 1,
        )
    if not blocks:
        other = [b.info for b in _blocks(text) if b.info not in PYTHON_INFO]
        if other:
            return Extraction(
                None,
                f"Format error: found a code block marked '{other[-1]}' but no Python code block. {FENCE_HINT}",
            )
        return Extraction(None, f"Format error: no code block found in the answer. {FENCE_HINT}")
    code = "\n".join(blocks[-1].lines)
    if not code.strip():
        return Extraction(
            None, f"Format error: the last Python code block is empty. {FENCE_HINT}", len(blocks)
        )
    return Extraction(code.rstrip() + "\n", None, len(blocks))
