"""Gymnasium ids of the verifiers, GEM and SkyRL-gym adapters, so ``gymnasium.make`` builds
them like any other env: ``gymnasium.make("interop/GEM-v0", env="game:GuessTheNumber-v0-easy")``.

The entry points are strings, imported by ``gymnasium.make`` only: registering them needs no
peer package. They are left out of ``sdpo_envs.registered_envs()`` (``sdpo envs``), which lists
environments that build without arguments.
"""

from __future__ import annotations

import gymnasium as gym

GYM_IDS: dict[str, str] = {
    "interop/Verifiers-v0": "sdpo_envs.interop.verifiers_env:VerifiersEnv",
    "interop/GEM-v0": "sdpo_envs.interop.gem_env:GemEnv",
    "interop/SkyRL-v0": "sdpo_envs.interop.skyrl_env:SkyRLEnv",
}


def register_gym_ids() -> None:
    for env_id, entry_point in GYM_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=True)


register_gym_ids()
