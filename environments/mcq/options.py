"""Reading a multiple-choice row: the question, lettered options and the answer letter.

Accepted shapes: ``options`` (or ``choices``) as a list (lettered A, B, ... in order), a dict
of letter -> text, or Hugging Face's ``{"label": [...], "text": [...]}`` (ARC); the answer
(``answer`` or ``answerKey``) as a letter, an option label, or a 0-based index (MMLU).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

LETTERS = string.ascii_uppercase


def _labelled(raw: Any) -> tuple[list[str], list[str]]:
    if isinstance(raw, Mapping) and "label" in raw and "text" in raw:
        return [str(x) for x in raw["label"]], [str(x) for x in raw["text"]]
    if isinstance(raw, Mapping):
        return [str(k) for k in raw], [str(v) for v in raw.values()]
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return list(LETTERS[: len(raw)]), [str(x) for x in raw]
    raise ValueError(
        f"task field 'options' must be a list or a dict of letter -> text, got {type(raw).__name__}"
    )


def normalize_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The row with ``options`` as an ordered ``{letter: text}`` dict and ``answer`` a letter."""
    question = task.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("task field 'question' must be a non-empty string")
    raw = task.get("options", task.get("choices"))
    if raw is None:
        raise ValueError("task field 'options' is missing")
    labels, texts = _labelled(raw)
    if not 2 <= len(texts) <= len(LETTERS) or len(labels) != len(texts):
        raise ValueError(f"task field 'options' must hold 2 to 26 options, got {len(texts)}")
    # Labels that are not the letters A, B, ... (e.g. ARC's "1".."4") are replaced by letters by position.
    letters = [label.upper() for label in labels]
    if letters != list(LETTERS[: len(letters)]) and not all(len(x) == 1 and x in LETTERS for x in letters):
        letters = list(LETTERS[: len(labels)])
    if len(set(letters)) != len(letters):
        raise ValueError(f"task field 'options' has repeated letters {labels}")
    answer = task.get("answer", task.get("answerKey"))
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(letters):
        letter = letters[answer]
    elif isinstance(answer, str) and answer.strip() in labels:
        letter = letters[labels.index(answer.strip())]
    elif isinstance(answer, str) and answer.strip().upper() in letters:
        letter = answer.strip().upper()
    else:
        raise ValueError(f"task field 'answer' must be one of the option letters {letters}, got {answer!r}")
    return {**task, "question": question, "options": dict(zip(letters, texts)), "answer": letter}


def render_question(task: Mapping[str, Any]) -> str:
    lines = [task["question"].strip(), ""]
    lines += [f"{letter}. {text}" for letter, text in task["options"].items()]
    return "\n".join(lines)
