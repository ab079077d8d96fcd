"""``sdpo serve``: any sdpo environment as an OpenEnv server, for OpenEnv clients (TRL, SkyRL,
verifiers, ``openenv``'s own ``EnvClient``); see ``sdpo_envs.interop.openenv_server``. The
server itself (``runners/serve.py``) is imported once the flags and the env are checked."""

from __future__ import annotations

import argparse

from sdpo_envs import make_env_factory

from .errors import UsageError
from .options import add_env_args, parse_pairs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        required=True,
        help="environment id (`sdpo envs` lists them) or a spec string (trl:..., openenv:...)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--max-sessions", type=int, default=8, help="concurrent WebSocket sessions, one environment each"
    )
    add_env_args(parser)


def prepare(args: argparse.Namespace) -> None:
    if args.max_sessions < 1:
        raise UsageError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    args.env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    make_env_factory(args.env, **args.env_kwargs)  # a wrong id or argument answers before the server loads
