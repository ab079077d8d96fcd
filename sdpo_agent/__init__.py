"""sdpo_agent: SDPO and GRPO trainers driven by sdpo_envs environments.

``from sdpo_agent import SDPOConfig, SDPOTrainer`` is a drop-in for the reference SDPO
trainer; ``GRPOConfig, GRPOTrainer`` are the RLVR baseline on the same rollout path.
Imports are lazy so the ``sdpo`` command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SDPOConfig": ".config",
    "GRPOConfig": ".config",
    "SDPOTrainer": ".trainers.sdpo",
    "GRPOTrainer": ".trainers.grpo",
    "resolve_model": ".models.resolve",
    "compare": ".jobs.compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'sdpo_agent' has no attribute {name!r}")
