"""Finding the program in a model's answer: the last complete ```python block."""

from __future__ import annotations

import pytest

from sdpo_envs.judges import extract_code


def test_single_python_block():
    result = extract_code("Here you go:\n```python\nprint(1)\n```\nDone.")
    assert result.ok and result.code == "print(1)\n" and result.error is None


@pytest.mark.parametrize("info", ["python", "py", "python3", "", "Python"])
def test_accepted_info_strings(info):
    assert extract_code(f"```{info}\nx = 1\n```").code == "x = 1\n"


def test_last_complete_block_wins():
    answer = "Draft:\n```python\nx = 1\n```\nBetter:\n```py\nx = 2\n```\n"
    result = extract_code(answer)
    assert result.code == "x = 2\n" and result.blocks == 2


def test_blocks_in_other_languages_are_ignored():
    answer = "```python\nprint('sol')\n```\nRun it with:\n```bash\npython sol.py\n```"
    assert extract_code(answer).code == "print('sol')\n"


def test_only_other_language_is_a_format_error_naming_it():
    result = extract_code("```text\nhello\n```")
    assert not result.ok and "Format error" in result.error and "'text'" in result.error


def test_no_block_is_a_format_error():
    result = extract_code("def f(): return 1")
    assert not result.ok
    assert result.error.startswith("Format error: no code block")
    assert "```python" in result.error


def test_unclosed_fence_is_reported_as_truncated():
    result = extract_code("```python\nx = 1\n```\nnow improved:\n```python\nx = 2\n")
    assert not result.ok
    assert "never closed" in result.error and "truncated" in result.error
    assert "line 5" in result.error


def test_empty_block_is_a_format_error():
    result = extract_code("```python\n\n   \n```")
    assert not result.ok and "empty" in result.error


def test_longer_fences_can_contain_backticks():
    answer = "````python\ns = '''\n```\n'''\n````"
    assert extract_code(answer).code == "s = '''\n```\n'''\n"


def test_tilde_fences_and_indented_fences():
    assert extract_code("~~~python\na = 1\n~~~").code == "a = 1\n"
    assert extract_code("  ```python\na = 1\n  ```").code == "a = 1\n"


def test_inline_backticks_are_not_fences():
    assert not extract_code("use ```python``` fences please").ok


def test_think_sections_are_skipped():
    answer = "<think>\n```python\ndraft()\n```\n</think>\nFinal:\n```python\nfinal()\n```"
    assert extract_code(answer).code == "final()\n"
    # a template that opened <think> in the prompt: everything before </think> is reasoning
    assert extract_code("```python\ndraft()\n```\n</think>\n```python\nfinal()\n```").code == "final()\n"


def test_unclosed_think_is_truncated():
    result = extract_code("<think>\nlet me think ```python\nx=1\n```")
    assert not result.ok and "<think>" in result.error


def test_rejects_non_string():
    with pytest.raises(TypeError):
        extract_code(None)  # type: ignore[arg-type]
