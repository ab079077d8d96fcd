"""Task sources: where an environment's task rows come from.

A task is a plain ``dict`` row. Sources are finite (a ``datasets.Dataset``, a list of dicts,
a JSONL file) or procedural (a function ``(index) -> row`` such as a seeded generator).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]


class TaskSource:
    """Random access to task rows, by index."""

    name: str = "tasks"

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Row:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_finite(self) -> bool:
        return True

    def draw(self, rng: np.random.Generator) -> tuple[int, Row]:
        """Pick a task uniformly with the caller's RNG (never the global one)."""
        index = int(rng.integers(len(self)))
        return index, self[index]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class RowsTaskSource(TaskSource):
    """A finite sequence of rows (a list of dicts or a ``datasets.Dataset``)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], name: str = "tasks") -> None:
        if len(rows) == 0:
            raise ValueError(f"task set {name!r} is empty")
        self._rows = rows
        self.name = name

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:
        if not -len(self) <= index < len(self):
            raise IndexError(f"task index {index} out of range for {self.name!r} with {len(self)} tasks")
        row = self._rows[index]
        if not isinstance(row, Mapping):
            raise TypeError(f"task {index} of {self.name!r} is a {type(row).__name__}, expected a dict row")
        return dict(row)


class ProceduralTaskSource(TaskSource):
    """An unbounded, seeded task generator: ``make_row(index)`` must be deterministic.

    ``size`` bounds the index range used when drawing (procedural sets are otherwise endless).
    """

    def __init__(
        self, make_row: Callable[[int], Row], size: int = 1_000_000, name: str = "procedural"
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self._make_row = make_row
        self._size = size
        self.name = name

    def __len__(self) -> int:
        return self._size

    @property
    def is_finite(self) -> bool:
        return False

    def __getitem__(self, index: int) -> Row:
        if not 0 <= index < self._size:
            raise IndexError(f"task index {index} out of range for {self.name!r} (size {self._size})")
        return dict(self._make_row(index))


def read_jsonl(path: str | os.PathLike[str], *, errors: list[str] | None = None) -> list[Row]:
    """Read a JSONL file of task rows; a malformed line is an error naming the line, or, when
    ``errors`` is a list, that error's message is appended to it and the line skipped."""
    rows: list[Row] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = f"{path}:{lineno}: not valid JSON ({exc.msg})"
            else:
                if isinstance(row, dict):
                    rows.append(row)
                    continue
                problem = f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}"
            if errors is None:
                raise ValueError(problem)
            errors.append(problem)
    return rows


def load_tasks(
    dataset: Any,
    builtins: Mapping[str, Callable[..., TaskSource]] | None = None,
    **builtin_kwargs: Any,
) -> TaskSource:
    """Turn what a user passes as ``dataset=`` into a :class:`TaskSource`.

    Accepted: a ``TaskSource``; a ``datasets.Dataset`` (or ``DatasetDict`` with a ``train``
    split); a list of dicts; a path to a ``.jsonl`` file; the name of a built-in set
    (``builtins``); an iterable of dicts (materialised); or a callable ``index -> row``.
    """
    builtins = builtins or {}
    if isinstance(dataset, TaskSource):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        key = str(dataset)
        name, _, arg = key.partition(":")
        if key in builtins:
            return builtins[key](**builtin_kwargs)
        if arg and name in builtins:
            return builtins[name](arg, **builtin_kwargs)
        if Path(key).suffix in {".jsonl", ".json"} or Path(key).exists():
            if not Path(key).exists():
                raise FileNotFoundError(f"task file {key!r} does not exist")
            return RowsTaskSource(read_jsonl(key), name=Path(key).name)
        known = ", ".join(sorted(builtins)) or "none"
        raise ValueError(
            f"unknown dataset {key!r}: not a file and not a built-in set (built-in sets: {known})"
        )
    try:  # datasets is optional at this point of the import graph only for speed
        import datasets

        if isinstance(dataset, datasets.DatasetDict):
            if "train" not in dataset:
                raise ValueError(f"DatasetDict has no 'train' split (splits: {list(dataset)})")
            dataset = dataset["train"]
        if isinstance(dataset, datasets.IterableDataset):
            dataset = list(dataset)
        if isinstance(dataset, datasets.Dataset):
            return RowsTaskSource(dataset, name=dataset.info.dataset_name or "dataset")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(dataset, Sequence):
        return RowsTaskSource(list(dataset))
    if callable(dataset):
        return ProceduralTaskSource(dataset, name=getattr(dataset, "__name__", "procedural"))
    if isinstance(dataset, Iterable):
        return RowsTaskSource(list(dataset), name="generator")
    raise TypeError(
        f"cannot load tasks from {type(dataset).__name__}; pass a datasets.Dataset, a list of dicts, "
        "a JSONL path, a built-in set name, or a callable index -> row"
    )
