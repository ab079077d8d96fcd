"""The same work for every trainer: 32 chat prompts, a deterministic token-sum reward, one
set of arguments, and the trainer (ours or TRL's) built on them."""

from __future__ import annotations

from typing import Any

from .settings import BATCH_SIZE, EMA_RATE, NUM_GENERATIONS, NUM_PROMPTS, SCENARIOS, TOPK


def dataset():
    from datasets import Dataset

    prompts, contexts = [], []
    for i in range(NUM_PROMPTS):
        a, b = 3 + 7 * i % 50, 11 + 5 * i % 40
        prompts.append([{"role": "user", "content": f"What is {a} + {b}? Reply with the number only."}])
        contexts.append(f"The expected answer is {a + b}; reply with digits only.")
    return Dataset.from_dict({"prompt": prompts, "privileged_context": contexts})


def token_sum_reward(modulus: int):
    """1.0 when the completion's token ids sum to a multiple of ``modulus``: deterministic,
    about one completion in ``modulus`` succeeds."""

    def reward(prompts, completions, completion_ids, **kwargs) -> list[float]:
        return [1.0 if sum(ids) % modulus == 0 else 0.0 for ids in completion_ids]

    reward.__name__ = f"token_sum_mod_{modulus}"
    return reward


def _common_args(spec: dict[str, Any], output_dir: str) -> dict[str, Any]:
    length = spec["completion_length"]
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": BATCH_SIZE,
        "gradient_accumulation_steps": 1,
        "num_generations": NUM_GENERATIONS,
        "max_completion_length": length,
        "max_prompt_length": 512,
        "generation_kwargs": {"min_new_tokens": length},
        "temperature": 1.0,
        "learning_rate": 1e-5,
        "max_steps": spec["warmup"] + spec["steps"],
        "gradient_checkpointing": spec["gradient_checkpointing"],
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10_000,
        "disable_tqdm": True,
        "disable_dropout": True,
        "seed": spec["seed"],
        "data_seed": spec["seed"],
        "dataloader_num_workers": 0,
        "loss_type": "dapo",
        "beta": 0.0,
    }


def build_trainer(spec: dict[str, Any], output_dir: str):
    kind = spec["trainer"].removesuffix("-vllm")
    scenario = SCENARIOS[spec["scenario"]]
    common = _common_args(spec, output_dir)
    if spec["trainer"].endswith("-vllm"):
        common.update(use_vllm=True, vllm_mode="colocate")
    sdpo = {
        "distillation_topk": TOPK,
        "distillation_alpha": 1.0,
        "distillation_weight": 1.0,
        "include_environment_feedback": scenario["feedback"],
        "distillation_add_tail": False,
    }
    if kind in ("ours-sdpo", "ours-sdpo-bf16"):
        from sdpo_agent import SDPOConfig, SDPOTrainer

        args = SDPOConfig(
            **common,
            **sdpo,
            full_logit_distillation=True,
            teacher_regularization="ema",
            ema_update_rate=EMA_RATE,
            teacher_storage_dtype="bfloat16" if kind == "ours-sdpo-bf16" else None,
            teacher_compute_dtype="bfloat16" if kind == "ours-sdpo-bf16" else None,
        )
        cls = SDPOTrainer
    elif kind == "trl-sdpo":
        from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

        args = SDPOConfig(
            **common,
            **sdpo,
            distillation_mode="topk_logits",
            teacher_model_kind="ema",
            teacher_update_rate=EMA_RATE,
            teacher_sync_steps=1,
        )
        cls = SDPOTrainer
    elif kind == "ours-grpo":
        from sdpo_agent import GRPOConfig, GRPOTrainer

        args, cls = GRPOConfig(**common), GRPOTrainer
    elif kind == "trl-grpo":
        from trl import GRPOConfig, GRPOTrainer

        common.pop("max_prompt_length")  # not a TRL GRPOConfig field; the prompts are far shorter anyway
        args, cls = GRPOConfig(**common), GRPOTrainer
    else:
        raise ValueError(f"unknown trainer {kind!r}")
    return cls(
        model=spec["model_dir"],
        reward_funcs=token_sum_reward(scenario["success_modulus"]),
        args=args,
        train_dataset=dataset(),
    )
