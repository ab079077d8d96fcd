"""The training hot path type-checks: mypy, with pyproject.toml's [tool.mypy] configuration
(the files it names: trainers, the rollout and its batch, rewards, reprompts, losses, configs,
the teacher)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy comes with the dev extra")
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
HOT_PATH = (
    "sdpo_agent/trainers",
    "sdpo_agent/rollout/batching.py",
    "sdpo_agent/rollout/agent_loop.py",
    "sdpo_agent/rewards.py",
    "sdpo_agent/reprompt.py",
    "sdpo_agent/losses.py",
    "sdpo_agent/config.py",
    "sdpo_agent/teacher.py",
)


def test_the_configuration_covers_the_hot_path_strictly():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(HOT_PATH) <= set(config["files"])
    assert config["disallow_untyped_defs"] and config["check_untyped_defs"]


@pytest.mark.timeout(900)  # a cold run (no .mypy_cache) takes a minute or two on a busy machine
def test_the_hot_path_type_checks():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout
