"""``sdpo/Math-v0``: math questions whose boxed final answer is checked with math-verify."""

from __future__ import annotations


def register_envs() -> None:
    import sdpo_envs

    sdpo_envs.register("sdpo/Math-v0", entry_point="environments.math_check.env:MathEnv")
