"""The ``sdpo`` command line: ``sdpo judge`` and ``sdpo envs``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sdpo_agent.cli import main

ROOT = Path(__file__).resolve().parent.parent
WRONG = ROOT / "examples" / "solutions" / "humaneval_0_wrong.py"
LCB_SAMPLE = ROOT / "environments" / "code_exec" / "lcb_sample.jsonl"


SANDBOX_BACKENDS = ("bwrap",)


def test_judge_canonical_passes(backend, capsys):
    assert main(["judge", "--task", "HumanEval/0", "--canonical", "--backend", backend]) == 0
    out = capsys.readouterr().out
    assert "verdict:   pass" in out and "reward:    1" in out
    assert "isolation: bwrap" in out
    assert "public      assert  pass" in out


def test_judge_wrong_example_prints_feedback_and_table(backend, capsys):
    assert main(["judge", "--task", "HumanEval/0", "--solution", str(WRONG), "--backend", backend]) == 0
    out = capsys.readouterr().out
    assert "verdict:   wrong_answer" in out and "reward:    0" in out
    assert "Failed check:" in out and "returned False" in out
    assert "wrong_answer" in out.splitlines()[-1]


def test_judge_json_output_with_tasks_file(backend, capsys, tmp_path):
    solution = tmp_path / "sol.py"
    solution.write_text("n = int(input())\nprint(sum(map(int, input().split())))\n")
    args = ["judge", "--tasks-file", str(LCB_SAMPLE), "--task", "sample_sum", "--solution", str(solution)]
    assert main([*args, "--backend", backend, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == "pass" and payload["reward"] == 1.0
    assert payload["details"]["total"] == 5 and payload["details"]["isolation"].startswith("bwrap")


def test_judge_model_answer_is_extracted(backend, capsys, tmp_path):
    answer = tmp_path / "answer.md"
    answer.write_text("I did it.\n```python\nprint('no fence closed')\n")
    assert main(["judge", "--task", "HumanEval/0", "--answer", str(answer), "--backend", backend]) == 0
    assert "verdict:   format_error" in capsys.readouterr().out


def test_judge_usage_errors(capsys):
    assert main(["judge", "--task", "HumanEval/9999", "--canonical"]) == 2
    assert "no task 'HumanEval/9999'" in capsys.readouterr().err
    assert main(["judge", "--task", "HumanEval/0", "--solution", "/nonexistent/file.py"]) == 2
    # one of --solution/--answer/--canonical is required
    assert main(["judge", "--task", "HumanEval/0"]) == 2
    assert "one of the arguments --solution --answer --canonical is required" in capsys.readouterr().err


def test_judge_error_exit_status(capsys):
    assert main(["judge", "--task", "HumanEval/0", "--canonical", "--backend", "no-such-backend"]) == 3
    assert "verdict:   judge_error" in capsys.readouterr().out


def test_envs_lists_registered_environments(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "sdpo/CodeExec-v0" in out and "environments.code_exec.env:CodeExecEnv" in out
    assert "code_exec: ok" in out
    assert main(["envs", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"id": "sdpo/CodeExec-v0", "entry_point": "environments.code_exec.env:CodeExecEnv"} in payload[
        "environments"
    ]


def test_cli_import_does_not_load_torch():
    code = "import sys, sdpo_agent.cli as c; c.build_parser(); print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
