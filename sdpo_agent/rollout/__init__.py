"""Rollout: the agent loop over environments, the generation backends, prompt sampling, batching."""
