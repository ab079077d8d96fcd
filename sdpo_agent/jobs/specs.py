"""What each job is asked to do (``JobSpec``, ``EvalSpec``, ``SFTSpec``), validated at
construction without loading torch: the command line checks a whole command here before it
imports the job that runs it.

A wrong value raises ``SpecError``, whose message names fields as ``{field}`` so that each
front end prints its own names: ``str()`` gives the field (``batch_size``), the CLI its flag
(``--batch-size``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdpo_envs.judge_backends import check_judge_backend
from sdpo_envs.value_types import coerce

ALGORITHMS = ("sdpo", "grpo", "dapo", "dr_grpo")
MODEL_HELP = "local path, cached hub name, or alias (tiny, smollm2-135m)"
HELDOUT_HELP = "held-out tasks (default: 32, at most a quarter of a finite task set)"


ENV_HELP = (
    "environment id (sdpo/Math-v0) or another library's env as <standard>:<target> "
    "(openenv:http://host:port, trl:module:Class; README, Environments from other libraries)"
)


class SpecError(ValueError):
    """A job's value is wrong; ``{field}`` in the template stands for the field's name."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.named({}))

    def named(self, names: Mapping[str, str]) -> str:
        """The message with each ``{field}`` shown as ``names[field]`` (the field itself if absent)."""
        return re.sub(r"\{(\w+)\}", lambda m: names.get(m[1], m[1]), self.template)


def check_field_types(spec: Any) -> None:
    """Every field of the dataclass ``spec`` as its annotation declares it (a YAML ``steps:
    abc`` is refused here, not deep inside the run), converted losslessly in place."""
    hints = typing.get_type_hints(type(spec))
    for f in dataclasses.fields(spec):
        try:
            value = coerce(f"{{{f.name}}}", getattr(spec, f.name), hints[f.name])
        except TypeError as exc:
            raise SpecError(str(exc)) from None
        object.__setattr__(spec, f.name, value)  # frozen specs too


def _at_least(spec: Any, names: tuple[str, ...], low: int) -> None:
    for name in names:
        value = getattr(spec, name)
        if value is not None and value < low:
            raise SpecError(f"{{{name}}} must be >= {low}, got {value}")


@dataclass
class JobSpec:
    """One training run on an environment with held-out evaluation (``sdpo train``; the runs
    of ``sdpo compare``). Field help is the command line's."""

    env: str = field(metadata={"help": ENV_HELP})
    model: str = field(default="tiny", metadata={"help": MODEL_HELP})
    algorithm: str = field(default="sdpo", metadata={"help": f"one of {', '.join(ALGORITHMS)}"})
    output_dir: str = "runs/job"
    steps: int = field(default=20, metadata={"help": "optimizer steps"})
    batch_size: int = field(
        default=8, metadata={"help": "completions per optimizer step", "unit": "completions"}
    )
    num_generations: int = field(
        default=4, metadata={"help": "completions per prompt (group size)", "unit": "completions"}
    )
    max_completion_length: int = field(default=128, metadata={"help": "longest completion", "unit": "tokens"})
    learning_rate: float = field(default=1e-5, metadata={"help": "optimizer learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, shuffling and the held-out draws"})
    eval_every: int = field(
        default=5,
        metadata={"help": "held-out evaluation interval (0: start/end only)", "unit": "steps"},
    )
    eval_tasks: int | None = field(default=None, metadata={"help": HELDOUT_HELP})
    eval_samples: int = field(default=4, metadata={"help": "samples per held-out task (n of pass@k)"})
    eval_temperature: float = 1.0
    quiet: bool = field(default=False, metadata={"help": "no progress bars or per-step logs on the terminal"})
    checkpoints: bool = field(
        default=True,
        metadata={"help": "save a resumable checkpoint (weights + optimizer) halfway in runs of 20+ steps"},
    )
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # any SDPOConfig/GRPOConfig field

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.algorithm not in ALGORITHMS:
            raise SpecError(f"{{algorithm}} must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        _at_least(
            self, ("steps", "batch_size", "num_generations", "max_completion_length", "eval_samples"), 1
        )
        _at_least(self, ("eval_every", "eval_tasks"), 0)
        if self.learning_rate <= 0:
            raise SpecError(f"{{learning_rate}} must be > 0, got {self.learning_rate}")
        if self.batch_size % self.num_generations:
            raise SpecError(
                f"{{batch_size}} ({self.batch_size}) must be a multiple of {{num_generations}} "
                f"({self.num_generations}): each prompt of a step gets {self.num_generations} completions"
            )


@dataclass
class EvalSpec:
    """A model's pass@k on an environment's held-out tasks (``sdpo eval``)."""

    env: str = field(metadata={"help": ENV_HELP})
    model: str = field(default="tiny", metadata={"help": MODEL_HELP})
    tasks: int | None = field(
        default=None, metadata={"help": HELDOUT_HELP.replace("held-out", "held-out tasks to evaluate:", 1)}
    )
    samples: int = field(default=8, metadata={"help": "samples per task (n)"})
    k: str | None = field(
        default=None, metadata={"help": "comma-separated k values, each <= --samples (default: 1,SAMPLES)"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    max_completion_length: int = field(default=256, metadata={"help": "longest completion", "unit": "tokens"})
    max_turns: int = field(default=4, metadata={"help": "turn limit of multi-turn envs"})
    seed: int = field(default=0, metadata={"help": "seed of sampling"})
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    use_vllm: bool = False
    judge_backend: str = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        try:
            check_judge_backend(self.judge_backend, self.ray_address)
        except ValueError as exc:
            raise SpecError(str(exc).replace("judge_backend", "{judge_backend}", 1)) from None
        _at_least(self, ("samples", "max_completion_length", "max_turns"), 1)
        _at_least(self, ("tasks",), 0)
        ks = self.ks
        if not ks or ks[0] < 1:
            raise SpecError(f"{{k}} must list positive integers, got {self.k!r}")
        if ks[-1] > self.samples:
            raise SpecError(
                f"pass@{ks[-1]} needs at least {ks[-1]} samples per task: raise {{samples}} or lower {{k}}"
            )

    @property
    def ks(self) -> list[int]:
        """The k of pass@k: ``k``'s values, by default 1 and ``samples``."""
        if self.k is None:
            return sorted({1, self.samples})
        try:
            return sorted({int(k) for k in self.k.split(",") if k.strip()})
        except ValueError:
            raise SpecError(f"{{k}} must be comma-separated integers, got {self.k!r}") from None


@dataclass(frozen=True)
class SFTSpec:
    """A warm start: supervised epochs on an environment's oracle demonstrations."""

    env: str = field(metadata={"help": ENV_HELP})
    model: str = field(default="tiny", metadata={"help": MODEL_HELP})
    tasks: int = field(default=256, metadata={"help": "oracle demonstrations"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the demonstrations"})
    learning_rate: float = field(default=5e-5, metadata={"help": "optimizer learning rate"})
    batch_size: int = field(default=8, metadata={"help": "demonstrations per optimizer step"})
    seed: int = field(default=0, metadata={"help": "seed of shuffling and initialisation"})
    max_length: int = 1024
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    reprompt_demonstrations: bool = field(
        default=False,
        metadata={
            "help": "also teach the oracle answer behind SDPO's teacher reprompts (a sibling's solution, "
            "or the env's feedback to a failed attempt), so the self-teacher can read them"
        },
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        _at_least(self, ("tasks", "batch_size", "max_length"), 1)
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise SpecError(
                f"{{epochs}} and {{learning_rate}} must be > 0, got {self.epochs}, {self.learning_rate}"
            )

    def key(self) -> str:
        values = dataclasses.asdict(self)
        if not self.reprompt_demonstrations:  # caches made before the field existed stay valid
            del values["reprompt_demonstrations"]
        payload = json.dumps({**values, "recipe": 2}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
