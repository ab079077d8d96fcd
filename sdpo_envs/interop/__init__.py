"""Environments of other libraries trained here (inbound adapters) and ours trained there.

``peer_env`` holds the base every inbound adapter builds on (``PeerEnv``, ``PeerStep``, the
``feedback_fn`` contract, peer faults as ``judge_error``); ``spec`` the ``<standard>:<target>``
spec strings the CLI takes. The adapters live one per module (``openenv``, ``trl_env``, ...)
and are imported on use, so ``import sdpo_envs`` never imports a peer package.

Outbound, imported on use too: ``trl_export`` (every sdpo environment as a TRL
``environment_factory`` class) and ``openenv_server`` (an OpenEnv server for any sdpo
environment; ``sdpo serve``).
"""

from .gym_ids import GYM_IDS
from .peer_env import FEEDBACK_FN_SOURCE, FeedbackFn, PeerEnv, PeerError, PeerStep, load_object
from .spec import ADAPTERS, make_from_spec, split_spec

__all__ = [
    "ADAPTERS",
    "FEEDBACK_FN_SOURCE",
    "GYM_IDS",
    "FeedbackFn",
    "PeerEnv",
    "PeerError",
    "PeerStep",
    "load_object",
    "make_from_spec",
    "split_spec",
]
