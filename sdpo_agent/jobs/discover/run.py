"""Test-time discovery on single hard questions: SDPO against best-of-k and multi-turn retries.

Every method gets the same question, initial weights, sampling settings and attempt budget,
and an attempt is always one generated completion judged by the environment:

* ``sdpo``: test-time SDPO on the one question. Each step samples a group of G attempts,
  the environment's feedback (and any successful sibling) conditions the EMA self-teacher,
  and the policy is distilled towards it (reverse KL on the student's top-K logits). The
  model is re-loaded from the initial weights for every question × seed.
* ``best_of_k``: n ≥ budget i.i.d. samples from the initial model. Its discovery@k is
  pass@k by the unbiased estimator over the samples of all seeds of a question.
* ``retries``: one conversation per seed; after each failed attempt the environment's
  feedback is appended as a user turn. When the conversation outgrows a token window the
  oldest past attempts are replaced by a placeholder first, feedback texts last.

For ``sdpo`` and ``retries``, discovery@k is the fraction of chains (question × seed) whose
first success came within k attempts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdpo_envs import make_env_factory

from ...models.resolve import resolve_model
from .baselines import run_best_of_k, run_retries
from .curves import discovery_curves
from .per_question_sdpo import run_sdpo
from .questions import resolve_tasks
from .report import write_report
from .spec import METHODS, DiscoverySpec, UnitResult


def _slug(task_index: int, task_id: str) -> str:
    return f"{task_index}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', task_id)}"[:80]


def run_discovery(
    spec: DiscoverySpec,
    tasks: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    *,
    methods: Sequence[str] = METHODS,
    command: str = "",
    warm_start_info: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every method × question × seed, then ``summary.json``, the PNG and ``report.md``.

    Each unit is saved under ``units/<method>/`` as it finishes; a rerun with the same
    settings reuses it, so an interrupted run resumes where it stopped.
    """

    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown method(s) {bad}; choose from {METHODS}")
    if not seeds:
        raise ValueError("give at least one seed")
    factory = make_env_factory(spec.env, **spec.env_kwargs)
    env = factory()
    if "retries" in methods and getattr(env, "max_turns", 1) > 1:
        raise ValueError(
            f"the retries baseline needs a single-turn env; {spec.env} has max_turns={env.max_turns}"
        )
    questions = resolve_tasks(env, tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = spec.key()
    initial: tuple[Any, Any] | None = None  # the baselines share one copy of the initial model
    units: list[UnitResult] = []
    for task_index, task_id in questions:
        for seed in seeds:
            for method in methods:
                path = out_dir / "units" / method / f"{_slug(task_index, task_id)}-s{seed}.json"
                unit = _load_unit(path, key)
                if unit is None:
                    if method == "sdpo":
                        unit = run_sdpo(task_index, task_id, seed, spec)
                    else:
                        if initial is None:
                            initial = _load_initial(spec.model)
                        model, tokenizer = initial
                        if method == "best_of_k":
                            unit = run_best_of_k(model, tokenizer, factory, task_index, task_id, seed, spec)
                        else:
                            unit = run_retries(model, tokenizer, env, task_index, task_id, seed, spec)
                    unit.spec_key = key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(unit.to_dict(), indent=2, default=float))
                    reused = ""
                else:
                    reused = " (reused)"
                found = unit.first_success
                log(
                    f"[discover] {task_id} seed {seed} {method}: "
                    + (f"first success at attempt {found}" if found else f"none in {spec.budget}")
                    + f", {len(unit.attempts)} attempts, {unit.wall_s:.1f}s{reused}"
                )
                units.append(unit)
    summary = {
        "command": command,
        "spec": dataclasses.asdict(spec),
        "spec_key": key,
        "methods": list(methods),
        "seeds": list(seeds),
        "questions": [{"index": i, "task_id": t} for i, t in questions],
        "warm_start": warm_start_info,
        "curves": discovery_curves(units, spec.budget),
        "units": [u.to_dict() for u in units],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    write_report(out_dir, summary, units)
    return summary


def _load_unit(path: Path, key: str) -> UnitResult | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return UnitResult.from_dict(data) if data.get("spec_key") == key else None


def _load_initial(name: str) -> tuple[Any, Any]:

    model, tokenizer = resolve_model(name)
    model.eval()
    return model, tokenizer
