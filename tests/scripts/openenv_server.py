"""Small OpenEnv environments written the OpenEnv way, and a server for them.

Imported by tests/test_interop_openenv.py (in process) and run as its own process to serve one
of them over HTTP/WebSocket: ``python openenv_server.py --fd N [--env NAME]`` serves on the
listening socket inherited as file descriptor ``N`` (the test binds it to port 0 first, so
there is no race for a free port).
"""

from __future__ import annotations

import argparse

import uvicorn
from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app


class ProgramAction(Action):
    program: str


class RunObservation(Observation):
    """What a code-execution environment reports: the task, and the run's output."""

    task: str = ""
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None


class TargetEnv(Environment[ProgramAction, RunObservation, State]):
    """'Print the target word': a stand-in judge that never runs the program. It fails every
    answer but one, with the stderr and exit code a runtime would give."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = State()
        self.target = "banana"

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs) -> RunObservation:
        self._state = State(episode_id=episode_id, step_count=0)
        self.target = ["banana", "cherry", "damson"][(seed or 0) % 3]
        return RunObservation(task=f"Write a program that prints the word {self.target}.")

    def step(self, action: ProgramAction, timeout_s: float | None = None, **kwargs) -> RunObservation:
        self._state.step_count += 1
        printed = action.program.strip()
        if printed == self.target:
            return RunObservation(stdout=printed, exit_code=0, done=True, reward=1.0)
        return RunObservation(
            stdout=printed[:40],
            stderr=f"AssertionError: expected output {self.target!r}",
            exit_code=1,
            done=True,
            reward=0.0,
        )

    @property
    def state(self) -> State:
        return self._state


class CounterEnv(TargetEnv):
    """Multi-turn: the episode ends on the third message; each step reports its turn."""

    def step(self, action: ProgramAction, timeout_s: float | None = None, **kwargs) -> RunObservation:
        self._state.step_count += 1
        done = self._state.step_count >= 3
        return RunObservation(
            stdout=f"turn {self._state.step_count}: {action.program.strip()[:20]}",
            done=done,
            reward=float(self._state.step_count) if done else 0.0,
        )


class RaisingEnv(TargetEnv):
    def step(self, action: ProgramAction, timeout_s: float | None = None, **kwargs) -> RunObservation:
        raise RuntimeError("the grader's sandbox is gone")


class RaisingResetEnv(TargetEnv):
    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs) -> RunObservation:
        raise OSError("cannot load the task file")


class MalformedEnv(TargetEnv):
    """Returns a plain dict, not an Observation."""

    def step(self, action: ProgramAction, timeout_s: float | None = None, **kwargs):  # type: ignore[override]
        return {"stdout": "hi", "done": True, "reward": 1.0}


class NaNRewardEnv(TargetEnv):
    def step(self, action: ProgramAction, timeout_s: float | None = None, **kwargs) -> RunObservation:
        return RunObservation(stdout="x", done=True, reward=float("nan"))


ENVS = {"target": TargetEnv, "counter": CounterEnv, "raising": RaisingEnv}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--env", default="target", choices=sorted(ENVS))
    parser.add_argument("--max-sessions", type=int, default=32, help="concurrent WebSocket sessions")
    args = parser.parse_args()
    app = create_fastapi_app(
        ENVS[args.env], ProgramAction, RunObservation, max_concurrent_envs=args.max_sessions
    )
    uvicorn.run(app, fd=args.fd, log_level="warning")


if __name__ == "__main__":
    main()
