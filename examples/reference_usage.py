"""The usage example of TRL's SDPO documentation page, runnable offline.

Only two things differ from the reference: the import line (`sdpo_agent` instead of
`trl.experimental.sdpo`) and the model name (the embedded `tiny` model instead of a hub id;
use "smollm2-135m" for a real small model). A reward function is defined because the page
uses one without showing it.
"""

from datasets import Dataset

from sdpo_agent import SDPOConfig, SDPOTrainer


def reward_func(prompts, completions, **kwargs):
    return [1.0 if "4" in completion[0]["content"] else 0.0 for completion in completions]


dataset = Dataset.from_dict(
    {
        "prompt": [[{"role": "user", "content": "Solve 2+2."}]],
        "privileged_context": ["Your earlier answer used the wrong format."],
    }
)

training_args = SDPOConfig(
    output_dir="sdpo-model",
    distillation_topk=100,  # Top-K logit distillation approximation
    full_logit_distillation=True,  # Required for top-K; enables non-reverse divergences
    include_environment_feedback=True,  # Use dataset privileged_context for teacher reprompts
)

trainer = SDPOTrainer(
    model="tiny",
    reward_funcs=reward_func,
    args=training_args,
    train_dataset=dataset,
)
trainer.train()
