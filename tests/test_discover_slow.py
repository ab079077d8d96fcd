"""`sdpo discover` with the real small model on Math-v0 questions it rarely solves (`pytest -m slow`)."""

from __future__ import annotations

import json

import pytest

from sdpo_agent.cli import main
from sdpo_agent.jobs.discover.spec import METHOD_LABELS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the real model on 2 cores

BUDGET, GROUP, WINDOW = 4, 2, 400


def test_discover_with_smollm2_on_two_gsm8k_questions(tmp_path, monkeypatch):
    monkeypatch.setenv("SDPO_GYM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "disc"
    # GSM8K word problems: SmolLM2-135M solved none of 8 samples on each of the first six.
    flags = (
        "--env sdpo/Math-v0 --task gsm8k_sample/0,gsm8k_sample/1 --model smollm2-135m --seeds 0 "
        f"--budget {BUDGET} --group-size {GROUP} --max-completion-length 96 --learning-rate 1e-5 "
        f"--topk 50 --retry-window-tokens {WINDOW}"
    )
    assert main(["discover", *flags.split(), "--output-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    report = (out / "report.md").read_text()
    assert (out / "discovery_at_k.png").stat().st_size > 5000
    units = summary["units"]
    assert {(u["task_id"], u["method"]) for u in units} == {
        (t, m) for t in ("gsm8k_sample/0", "gsm8k_sample/1") for m in ("sdpo", "best_of_k", "retries")
    }
    for unit in units:
        successes = [a["success"] for a in unit["attempts"]]
        assert unit["first_success"] == (successes.index(True) + 1 if True in successes else None)
        assert 1 <= len(unit["attempts"]) <= BUDGET
        assert all(a["verdict"] != "judge_error" for a in unit["attempts"])
        if unit["method"] == "retries":
            # The prompt and the latest feedback fit, so the window holds.
            assert unit["extra"]["max_prompt_tokens"] <= WINDOW
        if unit["method"] == "sdpo":
            assert unit["extra"]["steps"], "the trainer logged no step"
        label = METHOD_LABELS
        first = unit["first_success"]
        assert f"| `{unit['task_id']}` | {label[unit['method']]} |" in report
        assert f"s0: {first if first is not None else '—'} |" in report
    for method, curves in summary["curves"].items():
        assert len(curves["all"]) == BUDGET and all(0.0 <= v <= 1.0 for v in curves["all"]), method
    assert "**Reading:** " in report
