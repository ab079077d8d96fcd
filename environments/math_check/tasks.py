"""Task rows of ``sdpo/Math-v0`` and its built-in task sets.

A row needs ``question`` (text) and ``answer`` (a number or LaTeX, e.g. ``72``, ``\\frac{3}{4}``).
A GSM8K-style ``answer`` -- a worked solution ending in ``#### 72`` -- is accepted as is:
the part after the last ``####`` becomes the answer and the whole text is kept as
``solution``. Built-in sets:

* ``gsm8k_sample``: 30 GSM8K-format word problems shipped with the package (for tests);
* ``reasoning_gym:<name>``: an endless, seeded generator from ``reasoning-gym`` (offline).
  ``dataset_kwargs`` are ``seed`` (default 0), ``size`` (index range, default 100000) and
  the generator's own difficulty knobs, e.g. ``{"min_terms": 2, "max_terms": 6}`` for
  ``basic_arithmetic``. Only generators whose answer is one number are offered (see
  ``REASONING_GYM_GENERATORS``): others want answers math-verify cannot judge faithfully
  (a simplified fraction, a hexadecimal value, a factorisation, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdpo_envs import ProceduralTaskSource, RowsTaskSource, TaskSource, read_jsonl

DATA_DIR = Path(__file__).parent / "data"

REASONING_GYM_GENERATORS = frozenset(
    {
        "basic_arithmetic",
        "chain_sum",
        "count_bits",
        "count_primes",
        "decimal_chain_sum",
        "gcd",
        "gsm_symbolic",
        "lcm",
        "leg_counting",
        "number_sequence",
        "products",
        "simple_equations",
    }
)

_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def normalize_task(row: Mapping[str, Any]) -> dict[str, Any]:
    """Check a task row and bring its answer to final-answer form; ``ValueError`` names the field."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("math task field 'question' must be a non-empty string")
    raw = row.get("answer")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError(f"math task field 'answer' must be a string or a number, got {type(raw).__name__}")
    task = dict(row)
    answer = str(raw).strip()
    if "####" in answer:
        task["solution"] = answer
        answer = _THOUSANDS_COMMA.sub("", answer.rpartition("####")[2].strip())
    if not answer:
        raise ValueError("math task field 'answer' is empty (a GSM8K answer needs a value after '####')")
    task["answer"] = answer
    return task


def gsm8k_sample() -> TaskSource:
    return RowsTaskSource(read_jsonl(DATA_DIR / "gsm8k_sample.jsonl"), name="gsm8k_sample")


def reasoning_gym(name: str, *, seed: int = 0, size: int = 100_000, **config: Any) -> TaskSource:
    """Tasks ``reasoning_gym.create_dataset(name, seed=seed, ...)[index]``: deterministic per index."""
    if name not in REASONING_GYM_GENERATORS:
        known = ", ".join(sorted(REASONING_GYM_GENERATORS))
        raise ValueError(
            f"reasoning_gym generator {name!r} is not offered by sdpo/Math-v0 (offered: {known})"
        )
    import reasoning_gym as rg  # heavy import: only when asked for

    try:
        generator = rg.create_dataset(name, seed=seed, size=size, **config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"bad settings for reasoning_gym:{name}: {exc}") from exc

    def make_row(index: int) -> dict[str, Any]:
        item = generator[index]
        return {
            "question": item["question"],
            "answer": str(item["answer"]),
            "task_id": f"reasoning_gym:{name}/{seed}/{index}",
        }

    return ProceduralTaskSource(make_row, size=size, name=f"reasoning_gym:{name}")


BUILTIN_DATASETS = {"gsm8k_sample": gsm8k_sample, "reasoning_gym": reasoning_gym}
