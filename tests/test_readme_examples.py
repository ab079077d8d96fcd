"""The README cannot rot (issue 29, item 7): every fenced ``python`` block runs as shown, in a
fresh interpreter in an empty directory. (Every module is named in docs/architecture.md, which
the README links: tests/test_docs.py checks that.)

The trainer example is sized for a workstation (smollm2-135m, minutes per step on a CPU); it
runs here with the substitutions of ``SHRINK`` (the tiny model, one step, short completions).
Each substituted text must still be in the README, so an edit that changes the example also
has to change this table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_subprocess import child_env

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

# block marker -> (README text, what this test runs instead)
SHRINK: dict[str, list[tuple[str, str]]] = {
    "SDPOTrainer(": [
        ('model="smollm2-135m"', 'model="tiny"'),
        (
            "max_steps=5)",
            "max_steps=1, max_completion_length=16, num_generations=2, per_device_train_batch_size=2)",
        ),
    ],
}


def shrunk(block: str) -> str:
    for marker, substitutions in SHRINK.items():
        if marker in block:
            for old, new in substitutions:
                assert old in block, f"the README example no longer has {old!r}: update SHRINK"
                block = block.replace(old, new)
    return block


def test_the_readme_has_the_examples_this_test_expects():
    assert len(BLOCKS) >= 3
    assert all(any(marker in block for block in BLOCKS) for marker in SHRINK)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.strip().splitlines()[0][:40])
def test_python_block_runs(block, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", shrunk(block)],
        cwd=tmp_path,
        env=child_env(SDPO_GYM_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
