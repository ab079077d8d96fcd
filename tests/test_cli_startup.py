"""A mistake is answered before torch or transformers is imported (issue 29, item 6): every
check of a command runs in ``prepare`` and the heavy job is imported only through the
dispatch table (``sdpo_agent.cli.RUNNERS``) once the command is valid."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_subprocess import child_env

HEAVY = ("torch", "transformers", "datasets", "trl")
PROBE = f"""
import json, sys
from sdpo_agent.cli import main
status = main(sys.argv[1:])
print(json.dumps({{"status": status, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def run_main(*argv: str, cwd) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


MISTAKES = [
    ["train", "--env", "sdpo/Math-v0", "--stpes", "1"],
    ["train", "--env", "sdpo/Math-v0", "--steps", "abc"],
    ["train", "--env", "sdpo/Maht-v0"],
    ["train", "--env", "sdpo/Math-v0", "--env-arg", "reveal_answer=maybe"],
    ["train", "--env", "sdpo/Math-v0", "--batch-size", "6", "--num-generations", "4"],
    ["train", "--env", "sdpo/Math-v0", "--eval-tasks", "40"],
    ["eval", "--env", "sdpo/Math-v0", "--samples", "2", "--k", "1,8"],
    ["sft", "--env", "sdpo/Math-v0", "--tasks", "0"],
    ["compare", "--env", "sdpo/Math-v0", "--algorithms", "sdpo,grpoo"],
    ["discover", "--env", "sdpo/Math-v0", "--task", "999"],
]


@pytest.mark.parametrize("argv", MISTAKES, ids=lambda argv: " ".join(argv[2:]))
def test_a_usage_error_imports_no_torch(argv, tmp_path):
    assert run_main(*argv, cwd=tmp_path) == {"status": 2, "heavy": []}


def test_a_dry_run_imports_no_torch_either(tmp_path):
    assert run_main("train", "--env", "sdpo/CodeExec-v0", "--dry-run", cwd=tmp_path) == {
        "status": 0,
        "heavy": [],
    }


def test_importtime_shows_no_torch_on_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sys; from sdpo_agent.cli import main; sys.exit(main())",
         "train", "--env", "sdpo/Math-v0", "--stpes", "1"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    imported = {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    # The probe sees the command's own imports (importlib's own calls are not timed, their
    # import statements are).
    assert "sdpo_agent.cli.job_options" in imported
    assert not {name for name in imported if name.split(".")[0] in HEAVY}
