"""``sdpo/CodeExec-v0``: write a Python program; it is judged against tests in a sandbox."""

from __future__ import annotations


def register_envs() -> None:
    import sdpo_envs

    sdpo_envs.register("sdpo/CodeExec-v0", entry_point="environments.code_exec.env:CodeExecEnv")
