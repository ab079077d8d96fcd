"""``sdpo discover``: test-time SDPO on single hard questions against best-of-k and retries."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .options import add_vllm_flag, parse_pairs

HELP = "test-time SDPO on single questions vs best-of-k and multi-turn retries (discovery@k report)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="environment id, e.g. sdpo/CodeExec-v0")
    parser.add_argument(
        "--task",
        required=True,
        help="task id or index; several comma-separated (an exact id wins over an index)",
    )
    parser.add_argument(
        "--model", default="tiny", help="local path, cached hub name, or alias (tiny, smollm2-135m)"
    )
    parser.add_argument("--budget", type=int, default=16, help="attempts (generated completions) per chain")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (one chain each)")
    parser.add_argument(
        "--methods", default="sdpo,best_of_k,retries", help="comma-separated: sdpo, best_of_k, retries"
    )
    parser.add_argument("--group-size", type=int, default=4, help="SDPO attempts per step (G)")
    parser.add_argument("--topk", type=int, default=100, help="SDPO distillation top-K logits")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--max-completion-length", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, every method")
    parser.add_argument(
        "--retry-window-tokens", type=int, default=2048, help="context budget of the retry conversation"
    )
    parser.add_argument(
        "--best-of-samples",
        type=int,
        default=None,
        help="i.i.d. samples per seed (n >= budget; default: budget)",
    )
    parser.add_argument(
        "--stop-at-first-success",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop SDPO at its first success (--no-stop-at-first-success trains to the budget)",
    )
    parser.add_argument("--output-dir", default="runs/discover")
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gymnasium.make (YAML value), repeatable",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="any SDPOConfig field, repeatable"
    )
    parser.add_argument(
        "--warm-start",
        action="store_true",
        help="first run `sdpo sft` (cached) and start every method from it",
    )
    parser.add_argument("--sft-tasks", type=int, default=256)
    parser.add_argument("--sft-epochs", type=float, default=2.0)
    parser.add_argument("--sft-learning-rate", type=float, default=5e-5)
    add_vllm_flag(parser)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run(args: argparse.Namespace) -> int:
    import json

    from ..jobs.discover.run import run_discovery
    from ..jobs.discover.spec import DiscoverySpec

    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    model = args.model
    warm = None
    if args.warm_start:
        from ..jobs.sft import SFTSpec, warm_start

        path = warm_start(
            SFTSpec(
                env=args.env,
                model=args.model,
                tasks=args.sft_tasks,
                epochs=args.sft_epochs,
                learning_rate=args.sft_learning_rate,
                env_kwargs=tuple(sorted(env_kwargs.items())),
            )
        )
        warm = {**json.loads((path / "sft.json").read_text()), "path": str(path)}
        model = str(path)
    try:
        spec = DiscoverySpec(
            env=args.env,
            model=model,
            budget=args.budget,
            group_size=args.group_size,
            topk=args.topk,
            learning_rate=args.learning_rate,
            max_completion_length=args.max_completion_length,
            temperature=args.temperature,
            retry_window_tokens=args.retry_window_tokens,
            best_of_samples=args.best_of_samples,
            stop_at_first_success=args.stop_at_first_success,
            env_kwargs=env_kwargs,
            sdpo_overrides={
                **parse_pairs(args.set, "--set"),
                **({"use_vllm": True} if args.use_vllm else {}),
            },
        )
        seeds = [int(s) for s in _csv(args.seeds)]
    except ValueError as exc:
        raise SystemExit(f"sdpo discover: {exc}") from None
    command = shlex.join(["sdpo", *getattr(args, "_argv", sys.argv[1:])])
    out = Path(args.output_dir)
    summary = run_discovery(
        spec, _csv(args.task), seeds, out, methods=_csv(args.methods), command=command, warm_start_info=warm
    )
    print((out / "report.md").read_text())
    return 0 if summary["units"] else 1
