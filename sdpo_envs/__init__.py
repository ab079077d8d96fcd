"""sdpo_envs: Gymnasium-style verifiable text environments with rich feedback."""

from .core import Messages, TextEnv, TextSpace, Turn
from .feedback import VERDICTS, Feedback, Verdict, bound_text
from .registry import ENTRY_POINT_GROUP, discover_plugins, loaded_plugins, register, registered_envs
from .tasks import ProceduralTaskSource, RowsTaskSource, TaskSource, load_tasks, read_jsonl
from .vector import batch_step, rollout_batch
from .wrappers import FeedbackRetry

__all__ = [
    "ENTRY_POINT_GROUP",
    "VERDICTS",
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
    "batch_step",
    "bound_text",
    "discover_plugins",
    "load_tasks",
    "loaded_plugins",
    "read_jsonl",
    "register",
    "registered_envs",
    "rollout_batch",
]

discover_plugins()
