"""`sdpo compare`, `sdpo train`, `sdpo eval` and `sdpo sft` end to end with the `tiny` model."""

from __future__ import annotations

import json
import re

import pytest

import sdpo_envs
from sdpo_agent.cli import main
from sdpo_envs import Feedback, TextEnv


class EvenLengthEnv(TextEnv):
    """The tiny model succeeds about half the time: a real, non-degenerate signal."""

    default_dataset = [{"n": i} for i in range(40)]

    def build_messages(self, task):
        return [{"role": "user", "content": f"Write something of even length ({task['n']})."}]

    def judge(self, task, action):
        if len(action) % 2 == 0:
            return 1.0, Feedback.passed()
        return 0.0, Feedback(f"Odd length {len(action)}.", "wrong_answer")

    def oracle_actions(self, task):
        return ["ok"]


sdpo_envs.register("test/EvenLength-v0", entry_point=EvenLengthEnv)

SMALL = [
    "--model",
    "tiny",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--num-generations",
    "2",
    "--max-completion-length",
    "8",
    "--eval-every",
    "1",
    "--eval-tasks",
    "6",
    "--eval-samples",
    "2",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDPO_GYM_CACHE", str(tmp_path / "cache"))


def test_compare_writes_report_and_plots_with_the_measured_values(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--env", "test/EvenLength-v0", *SMALL, "--seeds", "0,1", "--output-dir", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("heldout_vs_generations.png", "heldout_vs_wallclock.png", "training_dynamics.png"):
        assert (out / name).stat().st_size > 5000  # a real rendered figure
    assert "![response length and teacher signal per step](training_dynamics.png)" in report
    assert set(summary["algorithms"]) == {"sdpo", "grpo"}
    for algo, row in summary["algorithms"].items():
        curves = [c for c in summary["curves"] if c["algorithm"] == algo]
        assert len(curves) == 2 and all(len(c["pass1"]) == 3 for c in curves)  # start, step 1, step 2
        finals = [c["pass1"][-1] for c in curves]
        assert row["final_mean"] == pytest.approx(sum(finals) / 2)
        line = next(line for line in report.splitlines() if line.startswith(f"| {algo} |"))
        assert f"{row['final_mean']:.3f} ± {row['final_std']:.3f}" in line
    # The last held-out point of each run is the one in its metrics file.
    metrics = [
        json.loads(line) for line in (out / "runs" / "sdpo-s0" / "metrics.jsonl").read_text().splitlines()
    ]
    last = [m["heldout/pass@1"] for m in metrics if "heldout/pass@1" in m][-1]
    assert summary["curves"][0]["pass1"][-1] == last
    # Per-step length and SDPO's teacher-signal share come from the same file; GRPO has no teacher.
    sdpo_s0 = next(c for c in summary["curves"] if c["algorithm"] == "sdpo" and c["seed"] == 0)
    trained = [m for m in metrics if "completions/mean_length" in m]
    assert sdpo_s0["train_steps"] == [m["step"] for m in trained] == [1, 2]
    assert sdpo_s0["step_lengths"] == [m["completions/mean_length"] for m in trained]
    signal = [m["self_distillation/reprompt_sample_fraction"] for m in trained]
    assert sdpo_s0["teacher_signal"] == signal
    assert all(not c["teacher_signal"] for c in summary["curves"] if c["algorithm"] == "grpo")
    share = summary["algorithms"]["sdpo"]["teacher_signal_share"]
    assert 0.0 <= share <= 1.0 and summary["algorithms"]["grpo"]["teacher_signal_share"] is None
    sdpo_line = next(line for line in report.splitlines() if line.startswith("| sdpo |"))
    grpo_line = next(line for line in report.splitlines() if line.startswith("| grpo |"))
    assert f"| {share:.2f} |" in sdpo_line and "| – |" in grpo_line
    assert "sdpo compare --env test/EvenLength-v0" in report
    assert re.search(r"\*\*Reading:\*\* ", report)


def test_single_seed_report_claims_no_winner(tmp_path):
    out = tmp_path / "one"
    assert (
        main(["compare", "--env", "test/EvenLength-v0", *SMALL, "--seeds", "0", "--output-dir", str(out)])
        == 0
    )
    assert "no difference is claimed" in (out / "report.md").read_text()


def test_train_and_eval_commands(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                "test/EvenLength-v0",
                *SMALL,
                "--algorithm",
                "dr_grpo",
                "--output-dir",
                str(out),
                "--set",
                "temperature=0.9",
            ]
        )
        == 0
    )
    job = json.loads((out / "job.json").read_text())
    assert job["algorithm"] == "dr_grpo" and job["overrides"] == {"temperature": 0.9}
    assert (out / "final" / "config.json").exists()
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--env",
                "test/EvenLength-v0",
                "--model",
                str(out / "final"),
                "--tasks",
                "4",
                "--samples",
                "4",
                "--k",
                "1,4",
                "--max-completion-length",
                "8",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["pass@1"] <= report["pass@4"] <= 1.0 and report["tasks"] == 4


def test_unknown_config_field_is_a_clear_error(tmp_path, capsys):
    argv = ["train", "--env", "test/EvenLength-v0", *SMALL, "--output-dir", str(tmp_path), "--set", "nope=1"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "sdpo: error: SDPOConfig has no field 'nope'\n"


def test_warm_start_trains_on_accepted_demonstrations_and_is_cached(tmp_path):
    from sdpo_agent.jobs.sft import SFTSpec, warm_start

    spec = SFTSpec(env="sdpo/Math-v0", model="tiny", tasks=16, epochs=3, learning_rate=1e-3, batch_size=8)
    logs: list[str] = []
    path = warm_start(spec, log=logs.append)
    summary = json.loads((path / "sft.json").read_text())
    assert summary["demonstrations"] == 16 and summary["train_loss"] > 0
    again = warm_start(spec, log=logs.append)
    assert again == path and "cached" in logs[-1]


def test_reprompt_demonstrations_teach_the_answer_behind_the_teachers_context():
    import gymnasium as gym

    from sdpo_agent.config import RepromptSettings
    from sdpo_agent.jobs.sft import IGNORE, reprompt_demonstration_tokens
    from sdpo_agent.models.tiny import build_tiny_model

    _, tokenizer = build_tiny_model()
    env = gym.make("sdpo/Math-v0", reveal_answer=True).unwrapped
    settings = RepromptSettings(include_environment_feedback=True)
    examples = reprompt_demonstration_tokens(env, 0, tokenizer, 4096, settings)
    assert len(examples) == 2
    answer = env.oracle_actions(env.task)[0]
    for example, shown in zip(examples, ("Correct solution:", "The expected answer is")):
        context = [t for t, label in zip(example["input_ids"], example["labels"]) if label == IGNORE]
        target = [label for label in example["labels"] if label != IGNORE]
        assert shown in tokenizer.decode(context)
        assert tokenizer.decode(target, skip_special_tokens=True) == answer
        assert target[-1] == tokenizer.eos_token_id


def test_compare_evaluates_each_seeds_starting_weights_once(tmp_path, monkeypatch):
    from sdpo_agent.jobs import callbacks
    from sdpo_agent.jobs import eval as evaluation

    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["seed"])
        return evaluation.evaluate_env(*args, **kwargs)

    monkeypatch.setattr(callbacks, "evaluate_env", counting)
    out = tmp_path / "cmp"
    small = [*SMALL[:-8], "--eval-every", "0", "--eval-tasks", "6", "--eval-samples", "2"]
    assert (
        main(["compare", "--env", "test/EvenLength-v0", *small, "--seeds", "0,1", "--output-dir", str(out)])
        == 0
    )
    # Per seed: one start evaluation shared by both algorithms, and one final evaluation each.
    assert sorted(calls) == [0, 0, 0, 1, 1, 1]
    curves = json.loads((out / "summary.json").read_text())["curves"]
    for seed in (0, 1):
        starts = {c["algorithm"]: c["pass1"][0] for c in curves if c["seed"] == seed}
        assert starts["sdpo"] == starts["grpo"]


def test_a_finished_run_leaves_no_optimizer_or_trainer_alive(tmp_path):
    """`sdpo compare` trains its runs in one process: a run's Adam moments and teacher copy must
    not live on into the next run (they did, through the accelerator and a callback cycle)."""
    import gc

    import torch
    from transformers import Trainer

    from sdpo_agent.jobs.train import JobSpec, run_job

    spec = JobSpec(
        env="test/EvenLength-v0",
        model="tiny",
        steps=1,
        batch_size=4,
        num_generations=2,
        max_completion_length=8,
        eval_every=0,
        eval_tasks=2,
        eval_samples=1,
        quiet=True,
        checkpoints=False,
        output_dir=str(tmp_path / "run"),
    )
    run_job(spec)
    alive = [o for o in gc.get_objects() if isinstance(o, (torch.optim.Optimizer, Trainer))]
    assert alive == []
    assert not (tmp_path / "run" / "checkpoint-1").exists()  # checkpoints=False: none written
