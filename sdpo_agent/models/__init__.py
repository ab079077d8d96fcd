"""Models: resolve a name or alias to weights, load them, build the tiny test model, convert SmolLM2."""
