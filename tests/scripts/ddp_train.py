"""Two-process CPU training run, launched by tests/test_distributed.py via `accelerate launch`."""

import json
import sys

import torch
from datasets import Dataset

from sdpo_agent import GRPOConfig, GRPOTrainer, SDPOConfig, SDPOTrainer
from sdpo_agent.models.tiny import build_tiny_model


def reward(prompts, completions, **kwargs):
    return [float(len(c) % 2) for c in completions]


def main(algorithm: str, output_dir: str) -> None:
    model, tokenizer = build_tiny_model()
    dataset = Dataset.from_dict(
        {"prompt": [f"Count to {i}:" for i in range(16)], "privileged_context": ["Be short."] * 16}
    )
    common = dict(
        output_dir=output_dir,
        per_device_train_batch_size=2,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        disable_tqdm=True,
        logging_steps=1,
        learning_rate=1e-2,
        use_cpu=True,
    )
    if algorithm == "sdpo":
        trainer = SDPOTrainer(
            model=model,
            reward_funcs=reward,
            args=SDPOConfig(include_environment_feedback=True, **common),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    else:
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=GRPOConfig(**common),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer.train()
    checksum = sum(
        p.double().sum().item() for p in trainer.accelerator.unwrap_model(trainer.model).parameters()
    )
    result = {
        "rank": trainer.accelerator.process_index,
        "world": trainer.accelerator.num_processes,
        "step": trainer.state.global_step,
        "checksum": checksum,
    }
    with open(f"{output_dir}/rank{result['rank']}.json", "w") as handle:
        json.dump(result, handle)
    torch.distributed.barrier() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
