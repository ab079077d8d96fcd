"""How dataset rows map to environment tasks (the split itself is ``task_split``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from sdpo_envs import TextEnv

from .task_split import split_indices

TASK_INDEX = "task_index"


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
