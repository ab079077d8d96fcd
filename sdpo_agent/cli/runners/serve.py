"""Runs ``sdpo serve`` (flags checked by ``cli/serve.py``'s ``prepare``)."""

from __future__ import annotations

import argparse

from sdpo_envs.interop.openenv_server import serve


def run(args: argparse.Namespace) -> int:
    serve(args.env, host=args.host, port=args.port, max_sessions=args.max_sessions, **args.env_kwargs)
    return 0
