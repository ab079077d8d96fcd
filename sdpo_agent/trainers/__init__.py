"""Trainers: a shared base step pipeline, then SDPO and the GRPO family on top of it."""
