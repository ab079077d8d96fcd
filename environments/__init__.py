"""Built-in environments; each sub-package is a plugin of the ``sdpo_envs.environments`` group."""
