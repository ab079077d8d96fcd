"""Progress is a line and noise is gone (issue 29, item 5): ``sdpo train`` draws one progress
bar on a terminal (step/total, reward, pass rate, loss, ETA) and writes every number to
``metrics.jsonl``; no ``pin_memory`` warning on CPU; a short run writes no checkpoints and no
nested ``runs/``; ``sdpo judge`` says its isolation in one short line (``--verbose``: all)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import threading

import pytest
from cli_subprocess import SDPO, TINY_JOB, child_env, sdpo

from sdpo_envs.sandbox.bwrap import BwrapBackend

MATH = ["--env", "sdpo/Math-v0"]


def run_on_a_terminal(argv: list[str], cwd, **env: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (where progress bars go); status, stdout, terminal text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a real terminal's size
    child = subprocess.Popen(
        argv, cwd=cwd, env=child_env(**env), stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = child.communicate(timeout=900)
    reader.join(timeout=30)
    os.close(master)
    return child.returncode, out, b"".join(chunks).decode(errors="replace")


def test_train_draws_a_progress_bar_and_logs_every_number_to_the_file(tmp_path):
    out_dir = tmp_path / "run"
    status, stdout, terminal = run_on_a_terminal(
        [SDPO, "train", *MATH, *TINY_JOB, "--output-dir", str(out_dir)],
        tmp_path,
        SDPO_GYM_CACHE=str(tmp_path / "c"),
    )
    assert status == 0, terminal
    frames = [frame.strip() for frame in re.split(r"[\r\n]", terminal) if frame.strip().startswith("train:")]
    assert frames, terminal
    last = frames[-1]
    assert re.search(r"train: 100%\|.*\| 2/2 \[\d\d:\d\d<\d\d:\d\d", last), last  # step/total, elapsed<ETA
    for shown in ("reward=", "pass=", "loss="):
        assert shown in last, last
    assert "{'loss'" not in terminal and "'reward':" not in terminal  # no raw metrics dicts
    assert "pin_memory" not in terminal
    assert json.loads(stdout)["output_dir"] == str(out_dir)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert {"reward", "success_rate", "grad_norm", "completions/mean_length"} <= set(steps[0])


def test_a_short_run_writes_no_checkpoints_and_no_nested_runs(tmp_path):
    out_dir = tmp_path / "run"
    done = sdpo(
        "train",
        *MATH,
        *TINY_JOB,
        "--output-dir",
        str(out_dir),
        cwd=tmp_path,
        SDPO_GYM_CACHE=str(tmp_path / "c"),
    )
    assert done.returncode == 0, done.stderr
    assert "pin_memory" not in done.stderr and "{'loss'" not in done.stdout + done.stderr
    names = sorted(p.name for p in out_dir.iterdir())
    assert not [n for n in names if n.startswith("checkpoint-")], names
    assert "runs" not in names and "final" in names and "metrics.jsonl" in names
    assert (out_dir / "tensorboard").is_dir()  # the TensorBoard events, where the run says


@pytest.fixture(scope="module")
def bwrap():
    reason = BwrapBackend.probe()
    if reason is not None:
        pytest.skip(f"bwrap sandbox unavailable: {reason}")
    return "bwrap"


def test_judge_says_its_isolation_in_one_short_line(bwrap, tmp_path):
    done = sdpo("judge", "--task", "HumanEval/0", "--canonical", "--backend", bwrap, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("isolation:"))
    assert re.fullmatch(r"isolation: bwrap \(\d+ protections enforced; --verbose lists them\)", line), line
    verbose = sdpo(
        "judge", "--task", "HumanEval/0", "--canonical", "--backend", bwrap, "--verbose", cwd=tmp_path
    )
    lines = verbose.stdout.splitlines()
    start = lines.index("isolation:")
    listed = [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]
    listed = listed[
        : next((i for i, t in enumerate(listed) if t.startswith("Passed") or t == ""), len(listed))
    ]
    assert listed[0] == "bwrap" and any("pid namespace" in item for item in listed)
    assert any("rlimit" in item for item in listed) and any("cgroup" in item for item in listed)
