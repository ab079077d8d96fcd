"""What the trainer-step benchmark compares: trainers, models, scenarios, the shared shape of
every run, and the goals the ratios are read against."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "@@TRAINER_STEP_RESULT@@"
# -bf16: teacher_compute_dtype and teacher_storage_dtype="bfloat16" (the teacher forward under
# bfloat16 autocast; its EMA copy's matrices stored in bfloat16, a stochastically rounded EMA).
# -vllm: use_vllm=True, vLLM colocated in the trainer's process (TRL: its own colocate mode).
TRAINERS = (
    "ours-sdpo",
    "ours-sdpo-bf16",
    "ours-sdpo-vllm",
    "trl-sdpo",
    "trl-sdpo-vllm",
    "ours-grpo",
    "ours-grpo-vllm",
    "trl-grpo",
    "trl-grpo-vllm",
)
# Per model: completion length L (exact: min_new_tokens = max_completion_length), warm-up and measured steps.
MODELS = {
    "tiny": {"completion_length": 128, "warmup": 1, "steps": 5},
    "smollm2-135m": {"completion_length": 64, "warmup": 1, "steps": 5},
}
# What the rewards look like. "dense": every row carries a teacher signal (half the completions
# succeed, every prompt has a privileged_context used as feedback) -- nothing for SDPO to skip.
# "sparse": about one completion in eight succeeds and there is no feedback text (the reference
# default include_environment_feedback=False), so only rows with a successful sibling have a
# teacher and groups where all fail have zero advantages -- the regime of an RL run that starts
# from a weak policy, like the main job's.
SCENARIOS = {
    "dense": {"success_modulus": 2, "feedback": True},
    "sparse": {"success_modulus": 8, "feedback": False},
}
BATCH_SIZE = 8
NUM_GENERATIONS = 4
TOPK = 20
EMA_RATE = 0.05
NUM_PROMPTS = 32
GOAL_TIME = 0.5
GOAL_MEMORY = 1.0
GOAL_SDPO_OVER_GRPO = 1.1
GOAL_VLLM_OVER_GENERATE = 1.0  # vLLM at least as fast as generate(), which it replaces
MEMORY_TIE = 0.02
STEP, STEP_CPU = "mean_step_s", "mean_step_cpu_s"  # the statistic the ratios use
PHASES = (
    "generate",
    "prepare_other",
    "student_fwd",
    "teacher_fwd",
    "loss_other",
    "backward",
    "optimizer",
    "post_step",
    "other",
)


def case_label(model: str, scenario: str) -> str:
    return f"{model}/{scenario}"
