"""``RolloutTrainer``: the shared online-RL plumbing on top of ``transformers.Trainer``.

Each generation batch goes through named steps — :meth:`rollout` (agent loop: a
``GenerationResult``), :meth:`reward` (``Scores``: rewards, validity, advantages), the padded
``RolloutBatch``, then algorithm-specific :meth:`extend_batch` (SDPO adds the teacher context) —
and is split into ``steps_per_generation`` micro-batches. The loss is the subclass's
:meth:`compute_loss`, which reads the ``RolloutBatch`` of its micro-batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence, Sized
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sdpo_envs import make_env_factory
from sdpo_envs.executors import Executor, make_executor

from ..config import RolloutConfig
from ..losses import policy_loss_on_rows
from ..models.loading import prepare_model_and_tokenizer
from ..rewards import RewardBatch, group_advantages, load_reward_funcs, score
from ..rollout.agent_loop import AgentLoop, EpisodeContext, Rollout
from ..rollout.backends import build_generator
from ..rollout.batching import GenerationResult, Prompt, RolloutBatch, Row, Scores, build_tensors
from ..rollout.phase_times import PhaseTimes
from ..rollout.prompt_sampler import RepeatSampler
from ..rollout.task_rows import TASK_INDEX, env_task_dataset, reset_options
from .diagnostics import Diagnostics
from .policy_logits import sampled_token_log_probs
from .trl_environments import resolve_environment_factory

logger = logging.getLogger(__name__)


def zero_loss(model: torch.nn.Module) -> torch.Tensor:
    """0, attached to every trainable parameter, so a micro-batch with nothing to learn
    still runs a backward that DDP's gradient sync can follow."""
    terms = [p.sum() * 0.0 for p in model.parameters() if p.requires_grad]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def _keep_rows(features: list[Row]) -> list[Row]:
    """The data collator: a generation batch stays a list of dataset rows until the rollout."""
    return features


def _sized(dataset: object, name: str) -> Sized:
    """``dataset``, which the group sampler must be able to count."""
    if not isinstance(dataset, Sized):
        raise ValueError(f"{name} must have a length (a map-style dataset), got {type(dataset).__name__}")
    return dataset


class _TeacherStepCallback(TrainerCallback):
    """Runs the teacher update right after every optimizer step."""

    def __init__(self, trainer: RolloutTrainer) -> None:
        self.trainer = trainer

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        with self.trainer.phase_times.measure("teacher_update"):
            self.trainer.after_optimizer_step()
        self.trainer.publish_phase_times()


class RolloutTrainer(Trainer):
    config_class: type[RolloutConfig] = RolloutConfig
    algorithm = "rollout"
    args: RolloutConfig
    model: torch.nn.Module

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: RolloutConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        peft_config: Any = None,
        env: Any = None,
        environment_factory: Any = None,
    ) -> None:
        env, train_dataset, reward_funcs = resolve_environment_factory(
            environment_factory, env, train_dataset, reward_funcs
        )
        if args is None:
            name = model if isinstance(model, str) else type(model).__name__
            args = self.config_class(output_dir=f"{str(name).split('/')[-1]}-{self.algorithm}")
        self.check_args(args)
        model, tokenizer = prepare_model_and_tokenizer(model, processing_class, args, peft_config)
        self.reward_funcs = load_reward_funcs(reward_funcs, reward_processing_classes, args.trust_remote_code)
        self.env_factory = make_env_factory(env, **(args.env_kwargs or {})) if env is not None else None
        if self.env_factory is None and not self.reward_funcs:
            raise ValueError("give reward_funcs, an env, or both: nothing would score the completions")
        if train_dataset is None and self.env_factory is not None:
            train_dataset = env_task_dataset(self.env_factory())
        self._check_dataset(train_dataset, "train_dataset")
        n_sources = len(self.reward_funcs) + (self.env_factory is not None)
        weights = args.reward_weights or [1.0] * n_sources
        if len(weights) != n_sources:
            raise ValueError(f"reward_weights has {len(weights)} entries for {n_sources} reward sources")
        self.reward_weights = torch.tensor(weights, dtype=torch.float32)
        super().__init__(
            model=model,
            args=args,
            data_collator=_keep_rows,  # type: ignore[arg-type]  # the rows reach _prepare_inputs as they are
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self.loss_is_scaled_for_ga = True  # compute_loss divides by GA itself (docs/algorithm.md)
        self.tokenizer = tokenizer
        self.eos_token_ids = sorted({tokenizer.eos_token_id, *self._generation_eos_ids()} - {None})
        self.generator = build_generator(
            lambda: self.accelerator.unwrap_model(self.model),
            tokenizer,
            args,
            self.eos_token_ids,
            version_getter=lambda: self.state.global_step,
            seed=args.seed + self.accelerator.process_index,
            max_num_seqs=args.per_device_train_batch_size * args.resolved_steps_per_generation,
        )
        self.generator.start()
        self.phase_times = PhaseTimes()
        self.agent = AgentLoop(
            self.generator,
            tokenizer,
            max_completion_length=args.max_completion_length or 256,
            max_turns=args.max_turns or (8 if self.env_factory is not None else 1),
            eos_token_ids=self.eos_token_ids,
            judge_workers=args.judge_workers,
            judge_timeout_s=args.judge_timeout_s,
            executor=self._judge_executor(args),
            chat_template_kwargs=args.chat_template_kwargs,
            phase_times=self.phase_times,
        )
        self._envs: list[Any] = []
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._step = 0
        self._buffered_inputs: list[RolloutBatch] | None = None
        self.diagnostics = Diagnostics.for_trainer(args, self.algorithm)
        self.add_callback(_TeacherStepCallback(self))

    def _judge_executor(self, args: RolloutConfig) -> Executor | None:
        """Where env steps run (``judge_backend``); None without an env (nothing to step)."""
        if self.env_factory is None:
            return None
        return make_executor(args.judge_backend, ray_address=args.ray_address, max_workers=args.judge_workers)

    # -- data -------------------------------------------------------------------------------
    def _check_dataset(self, dataset: Any, name: str) -> None:
        if dataset is None:
            return
        if isinstance(dataset, datasets.Dataset):
            columns = dataset.column_names
            if self.env_factory is None and "prompt" not in columns:
                raise ValueError(f"{name} needs a 'prompt' column (text or chat messages); it has {columns}")

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = ["prompt", "privileged_context", TASK_INDEX]  # type: ignore[assignment]

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("training needs a train_dataset (or env=... to draw tasks from)")
        return self._get_dataloader(
            self.train_dataset,
            description="training",
            batch_size=self._train_batch_size * self.args.resolved_steps_per_generation,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def _get_train_sampler(self, dataset: Dataset | None = None) -> RepeatSampler:
        return RepeatSampler(
            _sized(dataset if dataset is not None else self.train_dataset, "train_dataset"),
            mini_repeat_count=self.args.num_generations,
            batch_size=self.args.resolved_generation_batch_size // self.args.num_generations,
            repeat_count=self.args.num_iterations * self.args.resolved_steps_per_generation,
            shuffle=self.args.shuffle_dataset,
            seed=self.args.seed,
        )

    def _get_eval_sampler(self, eval_dataset: Dataset) -> RepeatSampler:
        return RepeatSampler(
            _sized(eval_dataset, "eval_dataset"),
            mini_repeat_count=self._num_generations("eval"),
            seed=self.args.seed,
        )

    def _num_generations(self, mode: str) -> int:
        if mode == "eval" and self.args.num_generations_eval is not None:
            return self.args.num_generations_eval
        return self.args.num_generations

    # -- the step pipeline --------------------------------------------------------------------
    def training_step(  # type: ignore[override]  # Trainer types its batch as a dict
        self,
        model: torch.nn.Module,
        inputs: list[Row],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        with self.phase_times.measure("training_step"):
            loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[arg-type]
        self._step += 1
        return loss

    def _prepare_inputs(self, generation_batch: list[Row]) -> RolloutBatch:  # type: ignore[override]
        if not self.model.training:
            return self.build_batch(generation_batch, "eval")
        steps = self.args.resolved_steps_per_generation
        generate_every = steps * self.args.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            self._buffered_inputs = None  # drop the previous batch first
            with self.phase_times.measure("prepare"):
                batch = self.build_batch(generation_batch, "train")
            self._buffered_inputs = batch.split(steps)
            self.dispatch_event(
                "on_generation_batch_built", generate_every=generate_every, steps_per_generation=steps
            )
        return self._buffered_inputs[self._step % steps]

    def build_batch(self, rows: list[Row], mode: str) -> RolloutBatch:
        """rollout → reward → tensors → (subclass) extend_batch."""
        generation = self.rollout(rows, mode)
        scores = self.reward(generation)
        batch = build_tensors(
            generation.rollouts,
            scores,
            pad_id=self.tokenizer.pad_token_id,
            eos_ids=self.eos_token_ids,
            mask_truncated=self.args.mask_truncated_completions,
            device=self.accelerator.device,
        )
        if mode == "train" and self.args.old_logps_needed:
            batch.old_per_token_logps = sampled_token_log_probs(
                self.model, batch, self.args.temperature, self.args.per_device_train_batch_size
            )
        self._record_completion_metrics(mode, batch, generation.rollouts)
        return self.extend_batch(batch, generation, scores)

    def rollout(self, rows: list[Row], mode: str) -> GenerationResult:
        """Prompts (from the dataset or the env), then the agent loop; ``mode`` is train or eval."""
        contexts = None
        prompts: list[Prompt]
        tools: list[Any]
        if self.env_factory is not None:
            contexts = self._reset_envs(rows)
            prompts = [c.messages for c in contexts]
            tools = [c.tools for c in contexts]
        else:
            prompts = [row["prompt"] for row in rows]
            tools = [None] * len(rows)
        prompt_ids: list[list[int]] = []
        for i, (prompt, tool_list) in enumerate(zip(prompts, tools)):
            # A group's rows repeat one prompt; its chat template renders once (a few ms each).
            if i and prompt == prompts[i - 1] and tool_list == tools[i - 1]:
                prompt_ids.append(list(prompt_ids[-1]))
            else:
                prompt_ids.append(self._tokenize_prompt(prompt, tool_list))
        self.dispatch_event(  # TRL 1.16's hook and payload (no rendered prompt text here either)
            "on_generation_prompts_selected", generation_prompts=prompts, generation_prompt_text=None
        )
        rollouts = self.agent.run(prompt_ids, contexts)
        process = self.accelerator.process_index
        return GenerationResult(
            mode=mode,
            rows=rows,
            prompts=prompts,
            rollouts=rollouts,
            completions=[self.tokenizer.decode(r.completion_ids, skip_special_tokens=True) for r in rollouts],
            process_rows=slice(process * len(rows), (process + 1) * len(rows)),
        )

    def reward(self, generation: GenerationResult) -> Scores:
        """Score rollouts; group-normalise over the whole (gathered) generation batch."""
        rows, prompts, rollouts = generation.rows, generation.prompts, generation.rollouts
        conversational = isinstance(prompts[0], list)
        completions: list[Any] = (
            [[{"role": "assistant", "content": c}] for c in generation.completions]
            if conversational
            else list(generation.completions)
        )
        columns: dict[str, Any] = {
            k: [row.get(k) for row in rows] for k in rows[0] if k not in ("prompt", "completion")
        }
        columns["trainer_state"] = self.state
        use_env = self.env_factory is not None
        scored = score(
            self.reward_funcs,
            self.reward_weights,
            prompts=prompts,
            completions=completions,
            completion_ids=[r.completion_ids for r in rollouts],
            columns=columns,
            env_rewards=[r.env_reward for r in rollouts] if use_env else None,
            judge_errors=[bool(r.feedback and r.feedback.is_judge_error) for r in rollouts]
            if use_env
            else None,
        )
        device = self.accelerator.device
        total = self.accelerator.gather(scored.total.to(device))
        valid = self.accelerator.gather(scored.valid.to(device, torch.float32)).bool()
        advantages, valid = group_advantages(
            total, self._num_generations(generation.mode), self.args.scale_rewards, valid
        )
        self._record_reward_metrics(generation.mode, scored, total, valid, rollouts)
        rewards = [float(r) if v else None for r, v in zip(scored.total.tolist(), scored.valid.tolist())]
        local = generation.process_rows
        return Scores(advantages=advantages[local].cpu(), valid=valid[local].cpu(), rewards=rewards)

    def policy_gradient_loss(
        self,
        logits: torch.Tensor,
        inputs: RolloutBatch,
        ref_logps: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The GRPO family's clipped-surrogate loss of a micro-batch (before GA scaling);
        ``logits`` (and ``ref_logps``) cover ``rows``, all when None (``losses.policy_loss_on_rows``)."""
        args = self.args
        return policy_loss_on_rows(
            logits,
            inputs.completion_ids,
            inputs.advantages,
            inputs.policy_loss_mask,
            inputs.old_per_token_logps,
            rows=rows,
            ref_per_token_logps=ref_logps,
            epsilon=args.epsilon,
            epsilon_high=args.epsilon_high,
            importance_sampling_level=args.importance_sampling_level,
            loss_type=args.loss_type,
            max_completion_length=args.max_completion_length,
            beta=args.beta,
        )

    def check_args(self, args: RolloutConfig) -> None:
        """Hook: settings the trainer (not the config) refuses, checked before anything loads."""

    def extend_batch(self, batch: RolloutBatch, generation: GenerationResult, scores: Scores) -> RolloutBatch:
        """Hook for algorithm-specific inputs (SDPO: the teacher context); returns the batch."""
        return batch

    def after_optimizer_step(self) -> None:
        """Hook run after each optimizer step (SDPO: the EMA teacher update)."""

    @property
    def success_threshold(self) -> float | None:
        """The reward that counts as a success, where the algorithm has one (SDPO's teacher)."""
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _generation_eos_ids(self) -> list[int]:
        config = getattr(self.model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        return [eos] if isinstance(eos, int) else list(eos or [])

    def _reset_envs(self, rows: list[Row]) -> list[EpisodeContext]:
        factory = self.env_factory
        if factory is None:
            raise ValueError("this trainer has no env to reset (it scores with reward functions)")
        while len(self._envs) < len(rows):
            self._envs.append(factory())
        contexts = []
        for env, row in zip(self._envs, rows):
            _, info = env.reset(options=reset_options(row))
            # Tools go through the chat template unless the env already wrote them into the prompt.
            tools = None if getattr(env, "tools_in_prompt", False) else info.get("tools")
            contexts.append(EpisodeContext(env=env, messages=info["messages"], tools=tools))
        return contexts

    def _tokenize_prompt(self, prompt: Prompt, tools: list[dict[str, Any]] | None) -> list[int]:
        if isinstance(prompt, list):
            ids = self.tokenizer.apply_chat_template(
                prompt,
                tools=tools,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                **(self.args.chat_template_kwargs or {}),
            )["input_ids"]
        else:
            ids = self.tokenizer(prompt)["input_ids"]
        if self.args.max_prompt_length is not None:
            ids = ids[-self.args.max_prompt_length :]
        return list(ids)

    def dispatch_event(self, event: str, **payload: Any) -> None:
        """Call ``callback.<event>(args=, state=, control=, model=, processing_class=, **payload)``
        on every callback that defines it (the reference's self-distillation hooks)."""
        for callback in self.callback_handler.callbacks:
            handler = getattr(callback, event, None)
            if handler is not None:
                handler(
                    args=self.args,
                    state=self.state,
                    control=self.control,
                    model=self.model,
                    processing_class=self.processing_class,
                    **payload,
                )

    # -- metrics ---------------------------------------------------------------------------------
    def publish_phase_times(self) -> None:
        """The step's phases (``rollout/phase_times.py``) to the callbacks and the train metrics."""
        phases = self.phase_times.take()
        self.dispatch_event("on_step_phases", phases=phases)
        for phase, (wall_s, _cpu_s) in phases.items():
            self._metrics["train"][f"timing/{phase}_s"].append(wall_s)

    def _record_reward_metrics(
        self,
        mode: str,
        scored: RewardBatch,
        total: torch.Tensor,
        valid: torch.Tensor,
        rollouts: Sequence[Rollout],
    ) -> None:
        m = self._metrics[mode]
        g = self._num_generations(mode)
        valid_total = total[valid]
        m["reward"].append(valid_total.mean().item() if valid_total.numel() else float("nan"))
        m["reward_std"].append(valid_total.std().item() if valid_total.numel() > 1 else 0.0)
        for j, name in enumerate(scored.names):
            column = scored.per_func[:, j]
            m[f"rewards/{name}/mean"].append(
                torch.nanmean(column).item() if (~column.isnan()).any() else float("nan")
            )
        group_std = torch.stack(
            [
                total.view(-1, g)[i][valid.view(-1, g)[i]].std()
                if valid.view(-1, g)[i].sum() > 1
                else torch.tensor(0.0)
                for i in range(total.numel() // g)
            ]
        )
        m["frac_reward_zero_std"].append((group_std < 1e-8).float().mean().item())
        m["judge_error_rate"].append(1.0 - valid.float().mean().item())
        if self.env_factory is not None:
            m["success_rate"].append(
                sum(bool(r.feedback and r.feedback.success) for r in rollouts) / len(rollouts)
            )
        self.diagnostics.check_rewards(total[valid], self.success_threshold, mode)

    def _record_completion_metrics(self, mode: str, batch: RolloutBatch, rollouts: Sequence[Rollout]) -> None:
        m = self._metrics[mode]
        lengths = batch.completion_attention_mask.sum(1).float()
        m["completions/mean_length"].append(lengths.mean().item())
        m["completions/max_length"].append(lengths.max().item())
        m["completions/clipped_ratio"].append(sum(not r.ended_with_eos for r in rollouts) / len(rollouts))
        m["num_turns"].append(sum(r.turns for r in rollouts) / len(rollouts))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    def prediction_step(  # type: ignore[override]  # Trainer types its batch as a dict
        self,
        model: torch.nn.Module,
        inputs: list[Row],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        batch = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, batch)
        return loss.detach(), None, None

    def compute_loss(  # type: ignore[override]  # Trainer types its batch as a dict
        self,
        model: torch.nn.Module,
        inputs: RolloutBatch,
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """The subclass's loss of one micro-batch, already divided by the GA steps."""
        raise NotImplementedError(f"{type(self).__name__} must define compute_loss")
