"""Wrappers in the style of Gymnasium's own."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .feedback import Feedback

DEFAULT_RETRY_TEMPLATE = (
    "Your previous answer was not accepted.\n\n{feedback}\n\n"
    "Please fix the problem and answer again in the same format."
)


class FeedbackRetry(gym.Wrapper[str, str, str, str]):
    """Turn a failed final answer into a retry: the feedback becomes the next observation.

    The episode ends on success, on a ``judge_error`` (retrying cannot help), or after
    ``max_attempts`` answers (``truncated=True``). ``info["messages"]`` carries the growing
    conversation so an agent can continue it token-exactly.
    """

    def __init__(
        self, env: gym.Env[str, str], max_attempts: int = 3, template: str = DEFAULT_RETRY_TEMPLATE
    ) -> None:
        super().__init__(env)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if "{feedback}" not in template:
            raise ValueError("template must contain the '{feedback}' placeholder")
        self.max_attempts = max_attempts
        self.template = template
        self._messages: list[dict[str, str]] = []
        self._attempts = 0
        self._task: dict[str, Any] | None = None
        self._seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        self._messages = list(info["messages"])
        self._attempts = 0
        self._task = self.env.unwrapped.task
        return observation, info

    def step(self, action: str):
        self._attempts += 1
        observation, reward, terminated, truncated, info = self.env.step(action)
        feedback: Feedback = info["feedback"]
        self._messages.append({"role": "assistant", "content": action})
        retry = (terminated or truncated) and not feedback.success and not feedback.is_judge_error
        if retry and self._attempts < self.max_attempts:
            observation = self.template.format(feedback=feedback.text)
            self._messages.append({"role": "user", "content": observation})
            # Put the inner env back on the same task so the next answer is judged there.
            self.env.reset(options={"task": self._task})
            terminated = truncated = False
        elif retry:
            truncated, terminated = True, False
        info = {**info, "messages": list(self._messages), "attempt": self._attempts}
        return observation, reward, terminated, truncated, info
