"""A real 2-process `accelerate launch` run on CPU (gloo): both ranks step in sync.

`--multi_gpu` is accelerate's switch for torchrun-style multi-process launching; with
`use_cpu=True` in the config the processes use the gloo backend on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


@pytest.mark.parametrize("algorithm", ["sdpo", "grpo"])
def test_two_process_accelerate_launch(tmp_path, algorithm):
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(SCRIPT),
        algorithm,
        str(tmp_path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["world"] for r in ranks} == {2}
    assert {r["step"] for r in ranks} == {2}
    # DDP keeps replicas identical: both ranks end with the same weights.
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6)
