"""SDPO on code: HumanEval in the bubblewrap sandbox, each rollout's judge feedback (failing
test input, expected vs actual output, tracebacks) feeding its own teacher reprompt.

    python examples/sdpo_code_feedback.py --model smollm2-135m --steps 20
"""

import argparse

from sdpo_agent import SDPOConfig, SDPOTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="tiny")
parser.add_argument("--steps", type=int, default=2)
parser.add_argument("--backend", default="auto", help="sandbox backend: bwrap, docker or auto")
cli = parser.parse_args()

args = SDPOConfig(
    output_dir="runs/sdpo-code",
    max_steps=cli.steps,
    per_device_train_batch_size=8,
    num_generations=4,
    max_completion_length=256,
    distillation_topk=20,
    full_logit_distillation=True,
    include_environment_feedback=True,  # the sandbox's feedback becomes the teacher's context
    env_kwargs={"dataset": "humaneval", "backend": cli.backend},
    gradient_checkpointing=False,
    logging_steps=1,
    report_to="none",
)
trainer = SDPOTrainer(model=cli.model, args=args, env="sdpo/CodeExec-v0")
trainer.train()
for record in trainer.state.log_history:
    if "rewards/env/mean" in record:
        print(
            f"step {record['step']}: reward {record['rewards/env/mean']:.3f}, "
            f"feedback used {record.get('self_distillation/feedback_used_fraction', 0):.2f}"
        )
