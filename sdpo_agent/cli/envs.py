"""``sdpo envs``: the registered environments and the plugins that provided them."""

from __future__ import annotations

import argparse
import json

import gymnasium as gym

import sdpo_envs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    envs = [
        {"id": env_id, "entry_point": _entry_point(gym.registry[env_id])}
        for env_id in sdpo_envs.registered_envs()
    ]
    plugins = sdpo_envs.loaded_plugins()
    if args.json:
        print(json.dumps({"environments": envs, "plugins": plugins}, indent=2))
        return 0
    width = max([len(e["id"]) for e in envs] + [11])
    print(f"{'environment':<{width}}  entry point")
    for env in envs:
        print(f"{env['id']:<{width}}  {env['entry_point']}")
    if not envs:
        print("(none registered)")
    print()
    print("plugins (entry-point group sdpo_envs.environments):")
    for name, status in sorted(plugins.items()):
        print(f"  {name}: {status}")
    if not plugins:
        print("  (none found)")
    return 0


def _entry_point(spec: object) -> str:
    entry = getattr(spec, "entry_point", None)
    if isinstance(entry, str):
        return entry
    return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"
