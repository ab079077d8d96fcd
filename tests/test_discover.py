"""`sdpo discover` (test-time SDPO vs best-of-k and retries) end to end with the `tiny` model,
plus its pieces: the retry window, the censored medians and the report's reading."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest

import sdpo_envs
from sdpo_agent.cli import main
from sdpo_agent.jobs.discover.baselines import OMITTED_ATTEMPT, fit_retry_window
from sdpo_agent.jobs.discover.curves import chain_discovery_curve
from sdpo_agent.jobs.discover.per_question_sdpo import sdpo_config
from sdpo_agent.jobs.discover.questions import resolve_tasks
from sdpo_agent.jobs.discover.report import median_attempts, reading, spread_text
from sdpo_agent.jobs.discover.spec import DiscoverySpec
from sdpo_agent.jobs.eval import pass_at_k
from sdpo_envs import Feedback, TextEnv


class ParityEnv(TextEnv):
    """Even-length answers pass (the tiny model finds one about half the time); the
    ``never`` question cannot be solved, so "not found" is exercised too."""

    default_dataset = [{"task_id": "even/0"}, {"task_id": "never", "never": True}, {"task_id": "even/2"}]

    def build_messages(self, task):
        return [{"role": "user", "content": "Write something of even length."}]

    def judge(self, task, action):
        if len(action) % 2 == 0 and not task.get("never"):
            return 1.0, Feedback.passed()
        return 0.0, Feedback(f"Your answer has odd length {len(action)}.", "wrong_answer")


sdpo_envs.register("test/DiscoverParity-v0", entry_point=ParityEnv)

BUDGET, GROUP = 4, 2
SMALL = f"--model tiny --budget {BUDGET} --group-size {GROUP} --topk 8 --max-completion-length 4 --learning-rate 1e-3"


def discover(out, flags: str) -> int:
    return main(
        [
            "discover",
            "--env",
            "test/DiscoverParity-v0",
            *flags.split(),
            *SMALL.split(),
            "--output-dir",
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sdpo-cache")  # shared by this module: `tiny` is built once


@pytest.fixture(autouse=True)
def private_cache(cache_dir, monkeypatch):
    monkeypatch.setenv("SDPO_GYM_CACHE", str(cache_dir))


def _units(out):
    return [json.loads(p.read_text()) for p in sorted((out / "units").rglob("*.json"))]


def _table_row(report: str, task: str, label: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| `{task}` | {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_discover_report_shows_the_recorded_first_successes(tmp_path, capsys):
    out = tmp_path / "disc"
    assert discover(out, "--task even/0,1 --seeds 0,1") == 0
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "discovery_at_k.png").stat().st_size > 5000  # a real rendered figure
    units = _units(out)
    assert len(units) == 2 * 2 * 3  # questions × seeds × methods
    labels = {"sdpo": "SDPO (test-time)", "best_of_k": "best-of-k (i.i.d.)", "retries": "multi-turn retries"}
    for task in ("even/0", "never"):
        for method, label in labels.items():
            runs = sorted(
                (u for u in units if u["task_id"] == task and u["method"] == method), key=lambda u: u["seed"]
            )
            firsts = []
            for unit in runs:
                successes = [a["success"] for a in unit["attempts"]]
                first = successes.index(True) + 1 if True in successes[:BUDGET] else None
                assert unit["first_success"] == first
                firsts.append(first)
                if method == "sdpo":  # stops after the group that found it, else uses the budget
                    expected = BUDGET if first is None else math.ceil(first / GROUP) * GROUP
                    assert len(unit["attempts"]) == expected
                if method == "retries":
                    assert len(unit["attempts"]) == (first or BUDGET)
                if method == "best_of_k":
                    assert len(unit["attempts"]) == BUDGET
            cells = _table_row(report, task, label)
            assert cells[5] == ", ".join(
                f"s{s}: {f if f is not None else '—'}" for s, f in zip((0, 1), firsts)
            )
            assert cells[4] == f"{sum(f is not None for f in firsts)}/2"
            median = median_attempts(firsts)
            assert cells[2] == (f"not found within {BUDGET}" if median is None else f"{median:g}")
            # Chain methods: discovery@k is the fraction of seeds found by k.
            if method != "best_of_k":
                assert summary["curves"][method][task] == pytest.approx(chain_discovery_curve(firsts, BUDGET))
    never = [u for u in units if u["task_id"] == "never"]
    assert all(u["first_success"] is None for u in never)
    assert f"| `never` | SDPO (test-time) | not found within {BUDGET} | — | 0/2 | s0: —, s1: — |" in report
    assert "sdpo discover --env test/DiscoverParity-v0 --task even/0,1" in report
    assert "**Reading:** " in report

    # Rerunning the same command reuses every finished unit.
    capsys.readouterr()
    assert discover(out, "--task even/0,1 --seeds 0,1") == 0
    assert capsys.readouterr().out.count("(reused)") == 12


def test_best_of_k_curve_is_pass_at_k_of_the_pooled_samples(tmp_path):
    out = tmp_path / "bok"
    assert discover(out, "--task 0,2 --seeds 0,1,2 --methods best_of_k --best-of-samples 6") == 0
    summary = json.loads((out / "summary.json").read_text())
    units = _units(out)
    per_task = []
    for task in ("even/0", "even/2"):
        mine = [u for u in units if u["task_id"] == task]
        n = sum(len(u["attempts"]) for u in mine)
        c = sum(a["success"] for u in mine for a in u["attempts"])
        assert n == 3 * 6
        expected = [pass_at_k(n, c, k) for k in range(1, BUDGET + 1)]
        assert summary["curves"]["best_of_k"][task] == pytest.approx(expected, abs=1e-12)
        per_task.append(expected)
    mean = [(a + b) / 2 for a, b in zip(*per_task)]
    assert summary["curves"]["best_of_k"]["all"] == pytest.approx(mean, abs=1e-12)


def test_sdpo_can_continue_to_the_budget_and_records_attempts_in_trainer_order(tmp_path):
    out = tmp_path / "full"
    assert discover(out, "--task even/0 --seeds 3 --methods sdpo --no-stop-at-first-success") == 0
    (unit,) = _units(out)
    assert len(unit["attempts"]) == BUDGET
    steps = unit["extra"]["steps"]
    assert len(steps) == BUDGET // GROUP
    # The trainer's own per-step success rate matches the attempts recorded for that group.
    for i, step in enumerate(steps):
        group = unit["attempts"][i * GROUP : (i + 1) * GROUP]
        assert step["success_rate"] == pytest.approx(sum(a["success"] for a in group) / GROUP)


def test_retry_window_drops_past_attempts_before_feedback():
    prompt = [{"role": "user", "content": "question"}]
    history = [(f"attempt-{i} " + "x" * 200, f"feedback-{i}") for i in range(3)]

    def chars(messages):
        return sum(len(m["content"]) for m in messages)

    full = fit_retry_window(prompt, history, chars, 10_000)
    assert full.attempts_dropped == full.feedback_dropped == 0
    assert [m["role"] for m in full.messages] == ["user", "assistant", "user"] * 1 + ["assistant", "user"] * 2

    # Room for one attempt: the two oldest attempts go, every feedback stays.
    budget = chars(full.messages) - 2 * (len(history[0][0]) - len(OMITTED_ATTEMPT))
    window = fit_retry_window(prompt, history, chars, budget)
    contents = [m["content"] for m in window.messages]
    assert window.attempts_dropped == 2 and window.feedback_dropped == 0
    assert contents[1] == contents[3] == OMITTED_ATTEMPT and contents[5] == history[2][0]
    assert [c for c in contents if c.startswith("feedback-")] == ["feedback-0", "feedback-1", "feedback-2"]

    # Tighter: every attempt goes before any feedback; then the oldest feedback; the latest stays.
    no_attempts = chars(prompt) + 3 * len(OMITTED_ATTEMPT) + sum(len(f) for _, f in history)
    window = fit_retry_window(prompt, history, chars, no_attempts)
    assert window.attempts_dropped == 3 and window.feedback_dropped == 0
    window = fit_retry_window(prompt, history, chars, no_attempts - 1)
    assert window.feedback_dropped == 1
    assert [m["content"] for m in window.messages if m["content"].startswith("feedback-")] == [
        "feedback-1",
        "feedback-2",
    ]
    window = fit_retry_window(prompt, history, chars, 1)
    assert window.messages == [
        *prompt,
        {"role": "assistant", "content": OMITTED_ATTEMPT},
        {"role": "user", "content": "feedback-2"},
    ]


def test_medians_and_spreads_never_impute_a_not_found_chain():
    assert median_attempts([3, 5, 4]) == 4
    assert median_attempts([3, None, 5]) == 5
    assert median_attempts([3, None]) is None  # the upper middle is beyond the budget
    assert median_attempts([2, 6, None, None, 9, 1]) == 7.5  # 1, 2, 6, 9, -, -: the middle two are found
    assert median_attempts([None, None, 2]) is None
    assert spread_text([3, 7, 5], 16) == "3–7"
    assert spread_text([3, None], 16) == "3–>16"
    assert spread_text([None, None], 16) == "—"
    assert spread_text([4, 4], 16) == "4"


def test_reading_claims_only_what_the_curves_show():
    slower = reading({"sdpo": [0.0, 0.5, 0.5, 1.0], "best_of_k": [0.5, 0.75, 0.9, 1.0]}, 4, 2)
    assert "SDPO at k = 4, best-of-k (i.i.d.) at k = 4" in slower and "fewer" not in slower
    faster = reading({"sdpo": [0.5, 1.0, 1.0, 1.0], "retries": [0.0, 0.0, 0.5, 0.5]}, 4, 2)
    assert "discovery 0.50" in faster and "SDPO at k = 1, multi-turn retries at k = 3" in faster
    assert "3.0× fewer" in faster
    nothing = reading({"sdpo": [0.0] * 4, "best_of_k": [0.0] * 4}, 4, 2)
    assert "Neither SDPO nor best-of-k" in nothing and "×" not in nothing
    one_sided = reading({"sdpo": [0.0] * 4, "retries": [0.0, 0.5, 0.5, 0.5]}, 4, 2)
    assert "SDPO found no solution" in one_sided and "×" not in one_sided


def test_sdpo_config_is_one_group_on_one_question_with_top_k_reverse_kl():
    spec = DiscoverySpec(env="test/DiscoverParity-v0", model="tiny", budget=10, group_size=4, topk=16)
    args = sdpo_config(spec, seed=7, output_dir="unused")
    assert args.per_device_train_batch_size == args.num_generations == args.generation_batch_size == 4
    assert args.max_steps == 3  # ceil(10 / 4); attempts past the budget are not counted
    assert args.full_logit_distillation and args.distillation_topk == 16 and args.distillation_alpha == 1.0
    assert args.teacher_regularization == "ema" and args.include_environment_feedback
    # Reusing each group for two optimizer steps needs twice the steps for the same budget.
    spec.sdpo_overrides = {"num_iterations": 2}
    assert sdpo_config(spec, seed=7, output_dir="unused").max_steps == 5
    with pytest.raises(ValueError, match="n >= k"):
        DiscoverySpec(env="x", model="tiny", budget=8, best_of_samples=4)
    with pytest.raises(ValueError, match="SDPOConfig has no field"):
        sdpo_config(DiscoverySpec(env="x", model="tiny", sdpo_overrides={"nope": 1}), 0, "unused")


def test_tasks_resolve_by_id_then_index():
    env = gym.make("test/DiscoverParity-v0").unwrapped
    assert resolve_tasks(env, ["never", "2", "even/0"]) == [(1, "never"), (2, "even/2"), (0, "even/0")]
    with pytest.raises(ValueError, match="no task 'nope'"):
        resolve_tasks(env, ["nope"])
    with pytest.raises(ValueError, match=r"index in \[0, 3\)"):
        resolve_tasks(env, ["3"])
