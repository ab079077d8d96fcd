"""Jobs: what the commands run (train with held-out evals, eval, compare, warm start, discover)."""
