"""XML-style tags in model output (``<answer>``, ``<think>``), read in linear time.

The obvious regex, ``<answer>(.*?)</answer>``, rescans the rest of the text from every
opening tag that is never closed: a completion of 20,000 ``<answer>`` tags took 26 s to
judge. These helpers give the same matches (leftmost opening tag, first closing tag after
it, no nesting) in one pass, so a hostile completion cannot stall a judge.

>>> tag_contents("<answer>A</answer> and <answer> B </answer>", "answer")
['A', ' B ']
>>> strip_thinking("<think>maybe A</think>So: <answer>B</answer>")
'So: <answer>B</answer>'
"""

from __future__ import annotations

import re
from functools import lru_cache

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@lru_cache(maxsize=64)
def _tag_patterns(tag: str, ignore_case: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile(re.escape(f"<{tag}>"), flags), re.compile(re.escape(f"</{tag}>"), flags)


def tag_spans(text: str, tag: str, *, ignore_case: bool = False) -> list[tuple[int, int, int]]:
    """``(start of the opening tag, start of the content, end of the content)`` of every
    closed ``<tag>...</tag>``, in order; the closing tag ends at ``end + len(tag) + 3``."""
    opening, closing = _tag_patterns(tag, ignore_case)
    spans = []
    position = 0
    while (start := opening.search(text, position)) is not None:
        end = closing.search(text, start.end())
        if end is None:  # no later opening tag can be closed either
            break
        spans.append((start.start(), start.end(), end.start()))
        position = end.end()
    return spans


def tag_contents(text: str, tag: str, *, ignore_case: bool = False) -> list[str]:
    """The content of every closed ``<tag>...</tag>`` (what ``re.findall`` of the lazy
    pattern returns)."""
    return [text[begin:end] for _, begin, end in tag_spans(text, tag, ignore_case=ignore_case)]


def remove_tag_blocks(text: str, tag: str) -> str:
    """``text`` without its closed ``<tag>...</tag>`` blocks."""
    pieces, position = [], 0
    for start, _, end in tag_spans(text, tag):
        pieces.append(text[position:start])
        position = end + len(tag) + 3
    pieces.append(text[position:])
    return "".join(pieces)


def strip_thinking(text: str) -> str:
    """Drop reasoning so that a tag written while thinking is not taken as the answer.

    Closed ``<think>...</think>`` blocks are removed; a lone ``</think>`` (chat templates that
    open the block inside the prompt) drops everything before it. An unclosed ``<think>``
    stays, for the caller to judge.
    """
    text = remove_tag_blocks(text, "think")
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    return text
