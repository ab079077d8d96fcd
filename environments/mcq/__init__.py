"""``sdpo/MCQ-v0``: multiple-choice questions answered with a letter in ``<answer>``; scalar feedback."""

from __future__ import annotations


def register_envs() -> None:
    import sdpo_envs

    sdpo_envs.register("sdpo/MCQ-v0", entry_point="environments.mcq.env:MCQEnv")
