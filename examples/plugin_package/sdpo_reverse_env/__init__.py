"""A third-party environment package: installing it makes ``plugin/Reverse-v0`` available."""

from sdpo_envs import Feedback, TextEnv


class ReverseEnv(TextEnv):
    default_dataset = [{"word": w} for w in ("plugin", "entry", "point")]

    def build_messages(self, task):
        return [{"role": "user", "content": f"Reverse the word '{task['word']}'."}]

    def judge(self, task, action):
        ok = action.strip() == task["word"][::-1]
        return float(ok), Feedback.passed() if ok else Feedback("Not the reversed word.", "wrong_answer")


def register_envs() -> None:
    import sdpo_envs

    sdpo_envs.register("plugin/Reverse-v0", entry_point="sdpo_reverse_env:ReverseEnv")
