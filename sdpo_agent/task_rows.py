"""How dataset rows map to environment tasks."""

from __future__ import annotations

from typing import Any

import datasets

from sdpo_envs import TextEnv

TASK_INDEX = "task_index"
MAX_DRAWN_TASKS = 100_000  # procedural task sets are endless; training draws from this many


def env_task_dataset(env: TextEnv) -> datasets.Dataset:
    """A dataset of task indices, for training on the env's own task set (no dataset given)."""
    if env.tasks is None:
        raise ValueError(f"{type(env).__name__} has no task set; pass train_dataset=... with task rows")
    n = min(len(env.tasks), MAX_DRAWN_TASKS)
    return datasets.Dataset.from_dict({TASK_INDEX: list(range(n))})


def reset_options(row: dict[str, Any]) -> dict[str, Any]:
    """``env.reset`` options for a dataset row: an index into the env's tasks, or the row itself."""
    if set(row) == {TASK_INDEX}:
        return {"index": int(row[TASK_INDEX])}
    return {"task": {k: v for k, v in row.items() if k != TASK_INDEX}}
