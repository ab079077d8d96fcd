"""How dataset rows map to environment tasks, and the train / held-out split of an env's tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from sdpo_envs import TextEnv

TASK_INDEX = "task_index"
MAX_DRAWN_TASKS = 100_000  # procedural task sets are endless; training draws from this many
EVAL_OFFSET_FRACTION = 0.5  # procedural held-out tasks come from the upper half of the index range


def split_indices(env: TextEnv, eval_size: int = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) task indices, disjoint and deterministic.

    Finite sets hold out their last ``eval_size`` tasks; procedural sets train on the first
    indices and evaluate on indices from the upper half of their range.
    """
    tasks = env.tasks
    if tasks is None:
        raise ValueError(f"{type(env).__name__} has no task set; pass train_dataset=... with task rows")
    if eval_size < 0:
        raise ValueError(f"eval_size must be >= 0, got {eval_size}")
    if tasks.is_finite:
        if eval_size >= len(tasks):
            raise ValueError(
                f"cannot hold out {eval_size} of {len(tasks)} tasks and still train: ask for fewer "
                f"held-out tasks (at most {len(tasks) - 1})"
            )
        cut = len(tasks) - eval_size
        return list(range(min(cut, MAX_DRAWN_TASKS))), list(range(cut, len(tasks)))
    start = int(len(tasks) * EVAL_OFFSET_FRACTION)
    return list(range(min(start, MAX_DRAWN_TASKS))), list(range(start, start + eval_size))


def index_dataset(indices: Sequence[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({TASK_INDEX: list(indices)})


def env_task_dataset(env: TextEnv, eval_size: int = 0) -> datasets.Dataset:
    """A dataset of task indices for training on the env's own task set (no dataset given)."""
    return index_dataset(split_indices(env, eval_size)[0])


def reset_options(row: dict[str, Any]) -> dict[str, Any]:
    """``env.reset`` options for a dataset row: an index into the env's tasks, or the row itself."""
    if set(row) == {TASK_INDEX}:
        return {"index": int(row[TASK_INDEX])}
    return {"task": {k: v for k, v in row.items() if k != TASK_INDEX}}
