"""``sdpo_envs.tags``: the same matches as the lazy regexes they replace, in linear time."""

from __future__ import annotations

import doctest
import random
import re

import sdpo_envs.tags as tags
from sdpo_envs.tags import remove_tag_blocks, strip_thinking, tag_contents, tag_spans

PIECES = [
    "<answer>",
    "</answer>",
    "<ANSWER>",
    "</Answer>",
    "<think>",
    "</think>",
    "a",
    "B",
    " ",
    "\n",
    "<",
    ">",
]


def random_texts(count: int = 2000):
    rng = random.Random(0)
    for _ in range(count):
        yield "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 24)))


def test_matches_the_lazy_regex_on_random_texts():
    lazy = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    lazy_any_case = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
    blocks = re.compile(r"<think>.*?</think>", re.DOTALL)
    for text in random_texts():
        assert tag_contents(text, "answer") == lazy.findall(text), text
        assert tag_contents(text, "answer", ignore_case=True) == lazy_any_case.findall(text), text
        assert remove_tag_blocks(text, "think") == blocks.sub("", text), text


def test_spans_locate_the_tags():
    text = "x<answer>12</answer>y"
    [(start, begin, end)] = tag_spans(text, "answer")
    assert text[start:begin] == "<answer>" and text[begin:end] == "12"
    assert text[end : end + len("answer") + 3] == "</answer>"


def test_strip_thinking():
    assert strip_thinking("<think>a</think>b<think>c</think>d") == "bd"
    assert strip_thinking("prompt opened it </think> answer") == " answer"
    assert strip_thinking("<think>never closed") == "<think>never closed"


def test_hostile_inputs_are_linear():
    # 20,000 unclosed tags: the lazy regex rescans from each (26 s); these return at once.
    assert tag_contents("<answer>" * 20000, "answer") == []
    assert strip_thinking("<think>" * 20000) == "<think>" * 20000
    assert len(tag_contents("<answer>x</answer>" * 20000, "answer")) == 20000


def test_docstring_examples():
    assert doctest.testmod(tags).failed == 0
