"""Gymnasium's own front door, ``gymnasium.make_vec``, in its async mode with shared memory
(Gymnasium's default for async) and in sync mode, over all four environments: the
observations are the real prompts, non-ASCII characters included, and fresh at every reset."""

from __future__ import annotations

import copy

import gymnasium as gym
import pytest

import sdpo_envs  # noqa: F401  (registers the environments)
from sdpo_envs import TextSpace
from sdpo_envs.spaces import SharedTexts

# A wrong final answer per environment (the step must be judged, reward 0).
WRONG_ANSWER = {
    "sdpo/Math-v0": "\\boxed{1}",
    "sdpo/MCQ-v0": "<answer>A</answer> <answer>B</answer>",
    "sdpo/CodeExec-v0": "no code",
    "sdpo/ToolUse-v0": "<answer>1</answer>",
}


def single_observation(env_id: str, index: int) -> str:
    env = gym.make(env_id)
    return env.reset(options={"index": index})[0]


def non_ascii_index(env_id: str) -> int:
    """A task whose prompt holds a character outside string.printable, else task 1."""
    env = gym.make(env_id).unwrapped
    for index in range(min(len(env.tasks), 400)):
        if any(ord(c) > 127 for c in env.reset(options={"index": index})[0]):
            return index
    return 1


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("env_id", sorted(WRONG_ANSWER))
def test_make_vec_returns_the_real_prompts(env_id, mode):
    special = non_ascii_index(env_id)
    indices = [special, 0]
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
    try:
        observations, _ = envs.reset(options={"index": indices[0]})  # the same options go to each env
        assert list(observations) == [single_observation(env_id, indices[0])] * 2
        first = copy.deepcopy(observations)
        action = WRONG_ANSWER[env_id]
        _, rewards, terminated, _, infos = envs.step((action, action))
        assert list(rewards) == [0.0, 0.0] and list(terminated) == [True, True]
        assert all(verdict != "pass" for verdict in infos["verdict"])
        observations, _ = envs.reset(options={"index": indices[1]})
        assert list(observations) == [single_observation(env_id, indices[1])] * 2
        assert first == (single_observation(env_id, indices[0]),) * 2  # a copy does not change
    finally:
        envs.close()


def test_shared_texts_decode_what_was_written_last():
    import multiprocessing as mp

    from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

    space = TextSpace(max_length=8)
    buffer = create_shared_memory(space, n=2, ctx=mp)
    view = read_from_shared_memory(space, buffer, n=2)
    assert isinstance(view, SharedTexts)
    write_to_shared_memory(space, 0, "×÷ ok", buffer)
    write_to_shared_memory(space, 1, "", buffer)
    assert tuple(view) == ("×÷ ok", "") and view[-2] == "×÷ ok"
    write_to_shared_memory(space, 1, "ünïcode", buffer)
    assert list(view) == ["×÷ ok", "ünïcode"] and copy.deepcopy(view) == ("×÷ ok", "ünïcode")
    with pytest.raises(ValueError, match="does not fit"):
        write_to_shared_memory(space, 0, "x" * 40, buffer)
