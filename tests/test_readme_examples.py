"""The README cannot rot (issue 29, item 7): every fenced ``python`` block runs as shown, in a
fresh interpreter in an empty directory. (Every module is named in docs/architecture.md, which
the README links: tests/test_docs.py checks that.)

The trainer example is sized for a workstation (smollm2-135m, minutes per step on a CPU); it
runs here with the substitutions of ``SHRINK`` (the tiny model, one step, short completions).
Each substituted text must still be in the README, so an edit that changes the example also
has to change this table.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_subprocess import child_env, sdpo_serve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

# block marker -> (README text, what this test runs instead)
SHRINK: dict[str, list[tuple[str, str]]] = {
    "trainer = SDPOTrainer(": [
        ('model="smollm2-135m"', 'model="tiny"'),
        (
            "max_steps=5)",
            "max_steps=1, max_completion_length=16, num_generations=2, per_device_train_batch_size=2)",
        ),
    ],
}


# block marker -> the server the block talks to: ``sdpo serve`` arguments, and the address the
# README shows (replaced by the address of the server this test starts, on a port the OS picks).
SERVED = {"GenericEnvClient": (["--env", "sdpo/CodeExec-v0"], "http://127.0.0.1:8000")}


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
    served = next((server for marker, server in SERVED.items() if marker in block), None)
    with contextlib.ExitStack() as stack:
        if served is not None:
            arguments, shown = served
            assert shown in block, f"the README example no longer talks to {shown}: update SERVED"
            block = block.replace(shown, stack.enter_context(sdpo_serve(*arguments)))
        done = _run_block(shrunk(block), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def _run_block(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        env=child_env(SDPO_GYM_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=900,
    )
