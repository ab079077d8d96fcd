"""Judging a multiple-choice answer: one option letter inside ``<answer>...</answer>``.

Feedback is scalar-only by design (the SDPO paper's "no rich feedback" setting): a wrong
letter gets just "Incorrect.". Format errors are still explained, since they say nothing
about which option is right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdpo_envs import Feedback
from sdpo_envs.tags import strip_thinking, tag_contents

FORMAT_HINT = "Put only the letter of your choice inside the tag, e.g. <answer>B</answer>."

# Each pattern splits a run of spaces one way only, so hostile input cannot make it backtrack.
_SINGLE = re.compile(r"^(?:option\s+)?[\(\[]?\s*([A-Za-z])(?:\s*[\)\]])?(?:\s*[.:])?$", re.IGNORECASE)
_LETTER_AND_TEXT = re.compile(r"^[\(\[]?([A-Z])[\)\]\.:]\s+(.+)$", re.DOTALL)
_LETTER = r"[\(\[]?[A-Za-z][\)\]]?"
_SEPARATOR = r"(?:\s*[,;/&+]\s*|\s+(?:(?:and|or)\s+)?)"
_SEVERAL = re.compile(rf"^{_LETTER}(?:{_SEPARATOR}{_LETTER})+\.?$", re.IGNORECASE)
# A letter offered as the answer without the tag: "the answer is B", "(C)", or a line holding only "B".
_MENTION = re.compile(
    r"\b(?:answer|option|choice)\b[^A-Za-z0-9<]{0,12}(?:is\s+)?[\(\[]?[A-Z]\b"
    r"|\([A-Z]\)"
    r"|^\s*[\(\[]?[A-Z][\)\]]?\s*\.?\s*$",
    re.MULTILINE,
)


def _norm(text: str) -> str:
    return " ".join(text.casefold().strip().rstrip(".").split())


def parse_choice(content: str, options: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(letter, None)`` or ``(None, why the content is not one option letter)``."""
    content = content.strip()
    if not content:
        return None, "the <answer> tag is empty"
    single = _SINGLE.match(content)
    if single:
        letter = single.group(1).upper()
        if letter not in options:
            return None, f"{letter} is not one of the options ({', '.join(options)})"
        return letter, None
    with_text = _LETTER_AND_TEXT.match(content)
    if (
        with_text
        and with_text.group(1) in options
        and _norm(with_text.group(2)) == _norm(options[with_text.group(1)])
    ):
        return with_text.group(1), None
    run = content.rstrip(".")
    if _SEVERAL.match(content) or (
        run.isupper() and run.isalpha() and len(run) >= 2 and set(run) <= set(options)
    ):
        return None, "the <answer> tag holds several letters; choose exactly one option"
    return None, "the <answer> tag must contain only the letter of one option"


def judge_mcq(task: Mapping[str, Any], action: str) -> tuple[float, Feedback]:
    options: Mapping[str, str] = task["options"]
    text = strip_thinking(action)
    tags = [t.strip() for t in tag_contents(text, "answer", ignore_case=True)]

    def format_error(message: str, **details: Any) -> tuple[float, Feedback]:
        return 0.0, Feedback(
            text=f"Format error: {message}. {FORMAT_HINT}", verdict="format_error", details=details
        )

    if not tags:
        if re.search(r"<answer>", text, re.IGNORECASE):
            return format_error("the <answer> tag is not closed")
        if _MENTION.search(text):
            return format_error(
                "the letter is written outside the <answer> tag; only the tag counts",
                reason="letter_outside_tag",
            )
        return format_error("no <answer> tag found", reason="no_tag")
    if len(tags) > 1:
        return format_error(f"{len(tags)} <answer> tags found; give exactly one", answers=tags)
    letter, problem = parse_choice(tags[0], options)
    if problem:
        return format_error(problem, answer=tags[0])
    if letter == task["answer"]:
        return 1.0, Feedback.passed("Correct.", answer=letter)
    return 0.0, Feedback(
        text="Incorrect.", verdict="wrong_answer", details={"answer": letter, "expected": task["answer"]}
    )
