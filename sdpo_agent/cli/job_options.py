"""The flags of the training commands (``train``, ``compare``): a job's shape from the fields
of ``JobSpec``, config fields from ``--set`` or a YAML file, env kwargs from ``--env-arg``."""

from __future__ import annotations

import argparse
from typing import Any

from sdpo_envs import make_env_factory

from ..jobs.specs import JobSpec, SFTSpec
from ..rollout.task_split import split_indices
from .errors import UsageError
from .options import (
    add_config_file,
    add_env_args,
    add_fields,
    add_judge_backend_flags,
    add_set_flag,
    add_vllm_flag,
    build_spec,
    config_overrides,
    explicit,
    fields_from,
    flag_names,
    named_spec,
    parse_pairs,
    read_config_file,
)

JOB_FIELDS = (
    "env",
    "model",
    "steps",
    "batch_size",
    "num_generations",
    "max_completion_length",
    "learning_rate",
    "eval_every",
    "eval_tasks",
    "eval_samples",
)
WARM_START_FIELDS = ("tasks", "epochs", "learning_rate", "reprompt_demonstrations")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    # --env may come from the YAML file: required only after merging.
    add_fields(parser, JobSpec, JOB_FIELDS, defaults={"env": None})
    add_env_args(parser)
    add_set_flag(parser, "SDPOConfig/GRPOConfig")
    add_config_file(parser)
    add_vllm_flag(parser)
    add_judge_backend_flags(parser)


def add_warm_start_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--warm-start", action="store_true", help=f"first run `sdpo sft` (cached) and start {what} from it"
    )
    add_fields(parser, SFTSpec, WARM_START_FIELDS, prefix="sft")


def warm_start_spec(args: argparse.Namespace, env: str, model: str, env_kwargs: dict[str, Any]) -> SFTSpec:
    return build_spec(
        SFTSpec,
        args,
        WARM_START_FIELDS,
        prefix="sft",
        env=env,
        model=model,
        env_kwargs=tuple(sorted(env_kwargs.items())),
    )


def job_spec(args: argparse.Namespace, **extra: Any) -> JobSpec:
    """The job of the flags, with the YAML file underneath them: a key of the file counts
    unless its flag was given a value of its own."""
    from_file = read_config_file(args.config)
    job = {key: from_file[key] for key in JOB_FIELDS if key in from_file}
    for key, value in fields_from(args, JOB_FIELDS).items():
        if key not in job or explicit(args._parser, args, key):
            job[key] = value
    if not job.get("env"):
        args._parser.error("the following arguments are required: --env")
    overrides = {k: v for k, v in from_file.items() if k not in JOB_FIELDS and k != "env_kwargs"}
    overrides.update(config_overrides(args))
    env_kwargs = {**(from_file.get("env_kwargs") or {}), **parse_pairs(args.env_arg, "--env-arg")}
    values = {**job, "env_kwargs": env_kwargs, "overrides": overrides, **extra}
    return named_spec(JobSpec, values, flag_names(JOB_FIELDS))


def check_env(env: str, env_kwargs: dict[str, Any], heldout: int | None, flag: str) -> dict[str, int]:
    """Build the env once and split its tasks, so a wrong id, argument, dataset or held-out
    size is answered before torch loads; the sizes of the split (for ``--dry-run``)."""
    probe = make_env_factory(env, **env_kwargs)()
    try:
        train, held_out = split_indices(probe, heldout)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    return {"train_tasks": len(train), "heldout_tasks": len(held_out)}
