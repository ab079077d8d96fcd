"""bench/trainer_step.py --quick, as CI runs it: every configuration trains in its own process and
the report and the results file come out whole. Nothing here reads a time against a bound."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAS_TRL = importlib.util.find_spec("trl") is not None


def test_quick_run_reports_every_trainer_and_the_ratios(tmp_path):
    output = tmp_path / "trainer_step.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "trainer_step.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads(output.read_text())
    assert saved["failures"] == []
    case = saved["summary"]["tiny/dense"]
    expected = {"ours-sdpo", "ours-grpo"} | ({"trl-sdpo"} if HAS_TRL else set())
    assert set(case["trainers"]) == expected
    for name, row in case["trainers"].items():
        assert row["measured_steps"] == 2, name
        assert row["mean_step_s"] > 0 and row["maxrss_mib"] > 0, name
        phases = row["phases_median_s"]
        assert phases["generate"] > 0 and phases["backward"] > 0, (name, phases)
    assert case["trainers"]["ours-sdpo"]["phases_median_s"]["teacher_fwd"] > 0
    assert case["ratios"]["ours_sdpo_over_grpo_time"] is not None
    if HAS_TRL:
        assert case["ratios"]["sdpo_time_ours_over_trl"] is not None
    assert "per optimizer step" in proc.stdout and "median step by phase" in proc.stdout
    assert "ours SDPO/ours GRPO" in proc.stdout
    shown = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "trainer_step.py"), "--show", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert shown.returncode == 0 and "ours SDPO/ours GRPO" in shown.stdout
