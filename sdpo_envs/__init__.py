"""sdpo_envs: Gymnasium-style verifiable text environments with rich feedback."""

from .core import Messages, TextEnv, Turn
from .env_factory import make_env_factory, make_vector_env
from .feedback import VERDICTS, Feedback, Verdict, bound_text
from .registry import ENTRY_POINT_GROUP, discover_plugins, loaded_plugins, register, registered_envs
from .reward_functions import EnvRewardFunction, add_privileged_context, as_reward_func
from .spaces import TextSpace
from .tasks import ProceduralTaskSource, RowsTaskSource, TaskSource, load_tasks, read_jsonl
from .vector import batch_step, rollout_batch
from .wrappers import FeedbackRetry

__all__ = [
    "ENTRY_POINT_GROUP",
    "VERDICTS",
    "EnvRewardFunction",
    "Feedback",
    "FeedbackRetry",
    "Messages",
    "ProceduralTaskSource",
    "RowsTaskSource",
    "TaskSource",
    "TextEnv",
    "TextSpace",
    "Turn",
    "Verdict",
    "add_privileged_context",
    "as_reward_func",
    "batch_step",
    "bound_text",
    "discover_plugins",
    "load_tasks",
    "loaded_plugins",
    "make_env_factory",
    "make_vector_env",
    "read_jsonl",
    "register",
    "registered_envs",
    "rollout_batch",
]

discover_plugins()
