"""sdpo_agent: SDPO and GRPO trainers driven by sdpo_envs environments."""
