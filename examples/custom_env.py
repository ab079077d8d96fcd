"""A custom verifiable environment in about 20 lines: reverse a word."""

import gymnasium as gym

import sdpo_envs
from sdpo_envs import Feedback, TextEnv


class ReverseEnv(TextEnv):
    default_dataset = [{"word": w} for w in ("gymnasium", "teacher", "feedback", "policy")]

    def build_messages(self, task):
        return [{"role": "user", "content": f"Reverse the word '{task['word']}'. Answer with the word only."}]

    def judge(self, task, action):
        expected, got = task["word"][::-1], action.strip()
        if got == expected:
            return 1.0, Feedback.passed()
        return 0.0, Feedback(f"Expected the reversal of {task['word']!r}, got {got!r}.", "wrong_answer")


sdpo_envs.register("examples/Reverse-v0", entry_point=ReverseEnv)

if __name__ == "__main__":
    env = gym.make("examples/Reverse-v0")
    observation, info = env.reset(seed=0)
    print(observation)
    *_, info = env.step("wrong")
    print(info["feedback"].verdict, "-", info["feedback"].text)
