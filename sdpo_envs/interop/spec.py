"""Environment spec strings: ``<standard>:<target>`` names a peer library's environment
wherever an env id is accepted (``--env`` on the command line, ``make_env_factory``,
``SDPOTrainer(env=...)``).

The grammar, one row per standard (``ADAPTERS``; the adapter module is imported only when its
prefix is used, so a peer package is needed only by the runs that use it):

==============  ==========================================  ==========================================
prefix          target                                      example
==============  ==========================================  ==========================================
``openenv:``    ``module:Class`` of an OpenEnv              ``openenv:my_envs.echo:EchoEnvironment``
                ``Environment`` (run in process), or the    ``openenv:http://127.0.0.1:8000``
                ``http(s)://host:port`` of a running
                OpenEnv server (its client)
``trl:``        ``module:Class`` of a TRL                   ``trl:my_envs.wordle:WordleEnv``
                ``environment_factory`` class (or a
                zero-argument factory)
``verifiers:``  a verifiers environment id, loaded by       ``verifiers:my_math_env``
                ``vf.load_environment`` (its module's
                ``load_environment(**env_args)``)
``gem:``        a registered GEM env id (``gem.make``)      ``gem:game:GuessTheNumber-v0-easy``
``skyrl:``      a registered SkyRL-gym env id; the tasks    ``skyrl:gsm8k`` with
                are SkyRL dataset rows (``dataset=``)       ``--env-arg dataset=rows.jsonl``
==============  ==========================================  ==========================================

``--env-arg key=value`` pairs become the adapter's keyword arguments (``dataset=``,
``max_turns=``, ``feedback_fn=module:function``, ...). A prefix wins over Gymnasium's own
``module:EnvId`` syntax, which is otherwise left to ``gymnasium.make``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core import TextEnv

# prefix -> "module:function" of the adapter's ``from_spec(target, **kwargs) -> TextEnv``.
ADAPTERS: dict[str, str] = {
    "openenv": "sdpo_envs.interop.openenv:from_spec",
    "trl": "sdpo_envs.interop.trl_env:from_spec",
    "verifiers": "sdpo_envs.interop.verifiers_env:from_spec",
    "gem": "sdpo_envs.interop.gem_env:from_spec",
    "skyrl": "sdpo_envs.interop.skyrl_env:from_spec",
}


def split_spec(env: str) -> tuple[str, str] | None:
    """``(prefix, target)`` when ``env`` is a spec string of a known standard, else ``None``."""
    prefix, sep, target = env.partition(":")
    if not sep or prefix not in ADAPTERS:
        return None
    return prefix, target


def make_from_spec(env: str, **kwargs: Any) -> TextEnv:
    """A fresh adapter for the spec string ``env`` (see the module docstring for the grammar)."""
    parts = split_spec(env)
    if parts is None:
        raise ValueError(
            f"{env!r} is not an environment spec string; prefixes: {', '.join(p + ':' for p in ADAPTERS)}"
        )
    prefix, target = parts
    if not target.strip():
        raise ValueError(f"environment spec {env!r} names no target after {prefix + ':'!r}")
    module_name, _, function = ADAPTERS[prefix].partition(":")
    # Imported here, not at the top: each adapter pulls in its peer package (trl, openenv, ...).
    builder = getattr(importlib.import_module(module_name), function)
    return builder(target.strip(), **kwargs)
