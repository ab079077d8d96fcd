"""``sdpo serve``: any sdpo environment as an OpenEnv server, for OpenEnv clients (TRL, SkyRL,
verifiers, ``openenv``'s own ``EnvClient``); see ``sdpo_envs.interop.openenv_server``."""

from __future__ import annotations

import argparse

from sdpo_envs.interop.openenv_server import serve

from .options import add_env_args, parse_pairs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        required=True,
        help="environment id (`sdpo envs` lists them) or a spec string (trl:..., openenv:...)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--max-sessions", type=int, default=8, help="concurrent WebSocket sessions, one environment each"
    )
    add_env_args(parser)


def run(args: argparse.Namespace) -> int:
    if args.max_sessions < 1:
        raise ValueError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    serve(args.env, host=args.host, port=args.port, max_sessions=args.max_sessions, **env_kwargs)
    return 0
