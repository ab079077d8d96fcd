"""The train / held-out split of an env's tasks, and how many tasks a job holds out by default
(light: the command line checks a split before it loads torch)."""

from __future__ import annotations

from sdpo_envs import TextEnv

MAX_DRAWN_TASKS = 100_000  # procedural task sets are endless; training draws from this many
EVAL_OFFSET_FRACTION = 0.5  # procedural held-out tasks come from the upper half of the index range
DEFAULT_HELDOUT = 32
HELDOUT_SHARE = 4  # a finite set holds out at most a quarter of its tasks by default


def heldout_size(env: TextEnv, requested: int | None = None) -> int:
    """``requested``, or the default: 32 tasks, at most a quarter of a finite set (the 32-task
    sample of ``sdpo/Math-v0`` holds out 8), none of a single task."""
    if requested is not None:
        return requested
    tasks = env.tasks
    if tasks is None or not tasks.is_finite:
        return DEFAULT_HELDOUT
    return min(DEFAULT_HELDOUT, len(tasks) // HELDOUT_SHARE or (1 if len(tasks) > 1 else 0))


def split_indices(env: TextEnv, eval_size: int | None = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) task indices, disjoint and deterministic.

    Finite sets hold out their last ``eval_size`` tasks (``None``: ``heldout_size``'s default);
    procedural sets train on the first indices and evaluate on indices from the upper half of
    their range.
    """
    tasks = env.tasks
    if tasks is None:
        raise ValueError(f"{type(env).__name__} has no task set; pass train_dataset=... with task rows")
    eval_size = heldout_size(env, eval_size)
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
