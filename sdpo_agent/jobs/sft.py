"""Warm start: a short supervised phase on the environment's oracle demonstrations.

Demonstrations are tokenised exactly as rollouts are (the policy's turns end with EOS, env
turns come from the same chat-template difference), so the warm-started policy speaks the
format the environment judges. Only the policy's tokens carry a loss. The result is cached
by a hash of everything that determines it; repeated runs load it instead of training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PrinterCallback, Trainer, TrainingArguments

from sdpo_envs import make_env_factory

from ..config import RepromptSettings
from ..models.resolve import cache_root, resolve_model
from ..reprompt import build_teacher_messages
from ..rollout.agent_loop import observation_tokens
from ..rollout.task_split import split_indices
from .specs import SFTSpec

IGNORE = -100


def demonstration_tokens(
    env: Any, index: int, tokenizer: Any, max_length: int
) -> dict[str, list[int]] | None:
    """Play the oracle on task ``index``; return input ids and labels (policy tokens only)."""

    _, info = env.reset(options={"index": index})
    tools = None if getattr(env, "tools_in_prompt", False) else info.get("tools")
    ids = list(
        tokenizer.apply_chat_template(
            info["messages"], tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )
    labels = [IGNORE] * len(ids)
    reward = 0.0
    for action in env.oracle_actions(env.task):
        turn = tokenizer(action, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids += turn
        labels += turn
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
        env_turn = observation_tokens(tokenizer, info["messages"], tools, {})
        ids += env_turn
        labels += [IGNORE] * len(env_turn)
    if reward < 1.0 or len(ids) > max_length:
        return None  # never teach a demonstration the env itself rejects
    return {"input_ids": ids, "labels": labels}


def reprompt_demonstration_tokens(
    env: Any, index: int, tokenizer: Any, max_length: int, settings: RepromptSettings
) -> list[dict[str, list[int]]]:
    """The oracle's answer to task ``index`` as SDPO's teacher sees the task: once after a
    successful sibling's solution, once after the environment's feedback to a failed attempt
    (an empty answer). Single-turn tasks only; the answer's tokens carry the loss."""
    _, info = env.reset(options={"index": index})
    actions = env.oracle_actions(env.task)
    if len(actions) != 1:
        return []
    answer = actions[0]
    feedback = env.step("")[4]["feedback"].text
    with_solution, _ = build_teacher_messages(
        [info["messages"]] * 2, [answer, ""], [1.0, 0.0], [None, feedback], num_generations=2, args=settings
    )
    with_feedback, _ = build_teacher_messages(
        [info["messages"]], [""], [0.0], [feedback], num_generations=1, args=settings
    )
    examples = []
    for messages in (with_solution[1], with_feedback[0]):
        prompt = list(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(prompt) + len(target) <= max_length:
            examples.append({"input_ids": prompt + target, "labels": [IGNORE] * len(prompt) + target})
    return examples


def _collate(pad_id: int):
    def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def warm_start(
    spec: SFTSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Train (or load from cache) the warm-started checkpoint; returns its directory.
    ``progress``: a progress bar (steps, ETA) while training, else no per-step output."""
    out = Path(cache_dir) if cache_dir else cache_root() / "sft" / spec.key()
    if (out / "sft.json").exists():
        log(f"warm start: cached checkpoint {out}")
        return out

    model, tokenizer = resolve_model(spec.model)
    env = make_env_factory(spec.env, **dict(spec.env_kwargs))()
    train_idx, _ = split_indices(env, 0)
    rows = []
    settings = RepromptSettings(include_environment_feedback=True)  # SDPOConfig's, as jobs use it
    for index in train_idx[: spec.tasks]:
        example = demonstration_tokens(env, index, tokenizer, spec.max_length)
        if example is not None:
            rows.append(example)
            if spec.reprompt_demonstrations:
                rows += reprompt_demonstration_tokens(env, index, tokenizer, spec.max_length, settings)
    if not rows:
        raise RuntimeError(f"the oracle of {spec.env} produced no accepted demonstration")
    log(f"warm start: {len(rows)} oracle demonstrations from {spec.env}")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    args = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size,
        seed=spec.seed,
        report_to=[],
        save_strategy="no",
        logging_steps=5,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        disable_tqdm=not progress,
        gradient_checkpointing=True,  # activations out of the peak; the same updates
        dataloader_pin_memory=torch.cuda.is_available(),  # else torch warns on every CPU run
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=_collate(tokenizer.pad_token_id),
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # disable_tqdm's fallback prints every log
    result = trainer.train()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    summary = {**asdict(spec), "demonstrations": len(rows), "train_loss": result.training_loss}
    (tmp / "sft.json").write_text(json.dumps(summary, indent=2, default=str))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)  # atomic: concurrent runs never see a half-written checkpoint
    except OSError:
        if not (out / "sft.json").exists():
            raise
    return out


def warm_started(
    spec: SFTSpec, *, log: Callable[[str], None] = print, progress: bool = True
) -> tuple[str, dict[str, Any]]:
    """The warm start's path (trained once, then cached) and its record, for the runs that
    start from it."""
    path = warm_start(spec, log=log, progress=progress)
    return str(path), {**json.loads((path / "sft.json").read_text()), "path": str(path)}
