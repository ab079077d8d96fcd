"""pass@k, confidence intervals and the train / held-out split."""

from __future__ import annotations

import itertools

import gymnasium as gym
import pytest

import sdpo_envs  # noqa: F401  (registers the built-in envs)
from sdpo_agent.jobs.eval import bootstrap_ci, pass_at_k
from sdpo_agent.rollout.task_split import MAX_DRAWN_TASKS, split_indices


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_pass_at_k_matches_brute_force_enumeration(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_rejects_impossible_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_bootstrap_interval_brackets_the_mean():
    values = [0.0, 0.25, 0.5, 1.0, 1.0, 0.75, 0.0, 0.5]
    low, high = bootstrap_ci(values, seed=1)
    assert low <= sum(values) / len(values) <= high
    assert low < high
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def test_held_out_tasks_never_overlap_training_tasks():
    finite = gym.make("sdpo/MCQ-v0").unwrapped
    train, held = split_indices(finite, 10)
    assert len(held) == 10 and not set(train) & set(held)
    assert sorted(train + held) == list(range(len(finite.tasks)))
    procedural = gym.make("sdpo/Math-v0", dataset="reasoning_gym:basic_arithmetic").unwrapped
    train, held = split_indices(procedural, 16)
    assert len(train) <= MAX_DRAWN_TASKS and min(held) > max(train)
    with pytest.raises(ValueError, match="cannot hold out"):
        split_indices(finite, len(finite.tasks))
