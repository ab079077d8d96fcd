"""discovery@k curves: chains (SDPO, retries) by their first success, best-of-k by pass@k."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..eval import pass_at_k
from .spec import METHODS, UnitResult


def chain_discovery_curve(first_successes: Sequence[int | None], budget: int) -> list[float]:
    """discovery@k for k = 1..budget: the fraction of chains whose first success is ≤ k."""
    if not first_successes:
        return [math.nan] * budget
    found = [f for f in first_successes if f is not None]
    return [sum(f <= k for f in found) / len(first_successes) for k in range(1, budget + 1)]


def best_of_k_curve(n: int, c: int, budget: int) -> list[float]:
    """discovery@k of i.i.d. sampling = pass@k, from n ≥ budget samples with c successes."""
    return [pass_at_k(n, c, k) for k in range(1, budget + 1)]


def discovery_curves(units: Sequence[UnitResult], budget: int) -> dict[str, dict[str, list[float]]]:
    """Per method: a curve per question and their mean (``"all"``), questions weighted equally."""
    out: dict[str, dict[str, list[float]]] = {}
    for method in METHODS:
        mine = [u for u in units if u.method == method]
        if not mine:
            continue
        per_task: dict[str, list[float]] = {}
        for task in dict.fromkeys(u.task_id for u in mine):
            runs = [u for u in mine if u.task_id == task]
            if method == "best_of_k":
                # The samples of all seeds are i.i.d. draws from the same initial model: pool them.
                n = sum(len(u.attempts) for u in runs)
                per_task[task] = best_of_k_curve(n, sum(u.successes for u in runs), budget)
            else:
                per_task[task] = chain_discovery_curve([u.first_success for u in runs], budget)
        out[method] = {**per_task, "all": list(np.mean(list(per_task.values()), axis=0))}
    return out
