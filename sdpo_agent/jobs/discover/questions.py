"""Which questions a discovery run asks: task ids or indices resolved against the env (light:
the command line resolves them before it loads torch)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def resolve_tasks(env: Any, tokens: Sequence[str]) -> list[tuple[int, str]]:
    """``(index, task_id)`` for each token: an exact task id of a finite set, else an index."""
    tasks = env.tasks
    if tasks is None:
        raise ValueError(f"{type(env).__name__} has no task set to pick questions from")
    ids: dict[str, int] = {}
    if tasks.is_finite:
        ids = {env.task_id(tasks[i], i): i for i in range(len(tasks))}
    resolved = []
    for token in tokens:
        token = token.strip()
        if token in ids:
            index = ids[token]
        elif re.fullmatch(r"\d+", token) and int(token) < len(tasks):
            index = int(token)
        else:
            known = ", ".join(list(ids)[:5]) + (", ..." if len(ids) > 5 else "")
            raise ValueError(
                f"no task {token!r}: give a task id{f' ({known})' if known else ''} "
                f"or an index in [0, {len(tasks)})"
            )
        _, info = env.reset(options={"index": index})
        resolved.append((index, str(info["task_id"])))
    return resolved
