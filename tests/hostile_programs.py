"""Hostile programs, as a policy could write them, and honest ones to judge beside them.

``HOSTILE``: name -> the source of a "solution" that attacks whatever it can reach from
inside its sandbox the moment it is imported: floods of processes, threads, memory, file
descriptors and disk, programs that kill or stop their own judge, busy trees, daemons that
try to outlive their run. Each is judged as an answer to a HumanEval task; what it earns is
its own business. What the table is for: no honest program judged at the same time, in the
same process or another one, may get any verdict but the one it gets alone.

``honest_cases(n)``: ``n`` HumanEval tasks with their canonical solutions (all pass alone).
Shared by tests/test_hostile_neighbours.py and by ``python tests/hostile_programs.py``,
which judges the hostile table in a loop (the neighbour of a measurement) until killed.
"""

from __future__ import annotations

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import sdpo_envs
from environments.code_exec.env import CodeExecEnv
from sdpo_envs.judges import CodeLimits
from sdpo_envs.sandbox import SandboxBackend, get_backend

_RAW = {
    "fork-bomb": """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """,
    "sleeping-fork-flood": """
        import os, time
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except OSError:
                time.sleep(0.01)
    """,
    "thread-flood": """
        import threading, time
        threads = []
        while True:
            try:
                t = threading.Thread(target=time.sleep, args=(60,), daemon=True)
                t.start()
                threads.append(t)
            except RuntimeError:
                while True:
                    pass
    """,
    "memory-flood": """
        hog = []
        while True:
            hog.append(b"x" * (1 << 24))
    """,
    "memory-flood-in-children": """
        import os
        for _ in range(8):
            if os.fork() == 0:
                hog = []
                while True:
                    hog.append(b"x" * (1 << 24))
        while True:
            os.wait()
    """,
    "fd-flood": """
        import os, resource, socket
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        keep = []
        while True:
            try:
                keep += os.pipe()
                keep += socket.socketpair()
            except OSError:
                break
        while True:
            pass
    """,
    "inotify-flood": """
        import ctypes, time
        libc = ctypes.CDLL(None)
        while libc.inotify_init() >= 0:
            pass
        time.sleep(30)
    """,
    "disk-flood": """
        import os
        for where in ("/tmp/fill", "fill"):
            try:
                with open(where, "wb") as fh:
                    while True:
                        fh.write(b"x" * (1 << 20))
            except OSError:
                pass
        while True:
            pass
    """,
    "kill-own-judge": """
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(1, signal.SIGKILL)
    """,
    "kill-everything-visible": """
        import os, signal
        os.kill(-1, signal.SIGKILL)
        for pid in range(1, 4096):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    """,
    "stop-own-judge": """
        import os, signal, time
        os.kill(os.getppid(), signal.SIGSTOP)
        os.kill(1, signal.SIGSTOP)
        os.kill(-1, signal.SIGSTOP)
        time.sleep(30)
    """,
    "stop-everything-visible": """
        import os, signal
        for pid in range(1, 4096):
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        os.kill(os.getpid(), signal.SIGSTOP)
    """,
    "cpu-burner": """
        while True:
            pass
    """,
    "busy-threads-and-processes": """
        import hashlib, os, threading
        buf = b"x" * (1 << 20)
        def spin():
            while True:
                hashlib.sha256(buf).digest()
        for _ in range(3):
            os.fork()
        for _ in range(4):
            threading.Thread(target=spin, daemon=True).start()
        spin()
    """,
    "escaping-daemon": """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    try:
                        if os.fork():
                            os._exit(0)
                    except OSError:
                        pass
                    time.sleep(0.01)
            os._exit(0)
        time.sleep(30)
    """,
    "output-flood": """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
            sys.stderr.write("y" * 65536)
    """,
}
HOSTILE: dict[str, str] = {name: textwrap.dedent(code).strip() + "\n" for name, code in _RAW.items()}


# Honest but CPU-bound: a canonical solution that first computes for a few tenths of a second.
# Alone it passes; beside busy neighbours it must still pass (not time out on the wall clock).
HEAVY_PREFIX = "_warm = sum(i * i for i in range(2_000_000))\n"


def fenced(code: str) -> str:
    return f"```python\n{code}```\n"


# The hostile programs' own limits: tighter than HumanEval's defaults, so the table is quick.
HOSTILE_LIMITS = CodeLimits(time_s=1.0, wall_s=3.0)
# The honest ones': a wall clock as tight as their CPU limit (they need milliseconds, the
# heavy ones a few tenths of a second), so that any time lost to a neighbour would show.
HONEST_LIMITS = CodeLimits(time_s=1.0, wall_s=1.0)


def humaneval_env(backend: str | SandboxBackend, limits: CodeLimits | None = None) -> CodeExecEnv:
    """A ``sdpo/CodeExec-v0`` env on HumanEval judged by ``backend``."""
    return CodeExecEnv(backend=backend, limits=limits)


def honest_cases(n: int = 164, heavy: int = 0) -> list[tuple[int, str]]:
    """(HumanEval index, canonical answer) for ``n`` tasks spread over all 164, the first
    ``heavy`` of them made CPU-bound (``HEAVY_PREFIX``)."""
    env = humaneval_env("no-such-backend")  # only reads the tasks
    total = len(env.tasks)
    picked = sorted({round(i * total / n) for i in range(n)}) if n < total else list(range(total))
    cases = []
    for number, index in enumerate(picked):
        env.reset(options={"index": index})
        answer = env.oracle_actions(env.task)[0]
        if number < heavy:
            answer = answer.replace("```python\n", "```python\n" + HEAVY_PREFIX, 1)
        cases.append((index, answer))
    return cases


def hostile_cases() -> list[tuple[int, str]]:
    """The hostile table as (HumanEval index, answer) pairs; ``judge_all`` gives them
    ``HOSTILE_LIMITS`` (it knows them by their answers)."""
    return [(i % 164, fenced(code)) for i, code in enumerate(HOSTILE.values())]


_HOSTILE_ANSWERS = {fenced(code) for code in HOSTILE.values()}


def judge_all(backend: str | SandboxBackend, cases: list[tuple[int, str]], workers: int = 4) -> list[dict]:
    """Judge (task index, answer) pairs concurrently through one env each and one worker pool
    (``sdpo_envs.batch_step``); the verdict, reward and feedback of each."""
    envs = []
    for index, answer in cases:
        env = humaneval_env(backend, HOSTILE_LIMITS if answer in _HOSTILE_ANSWERS else HONEST_LIMITS)
        env.reset(options={"index": index})
        envs.append(env)
    results = sdpo_envs.batch_step(envs, [answer for _index, answer in cases], max_workers=workers)
    return [
        {"verdict": r.info["verdict"], "reward": r.reward, "feedback": r.info["feedback"].text}
        for r in results
    ]


def judge_hostile_forever(backend: str, workers: int = 4) -> None:
    """The neighbour: judge the whole hostile table again and again (until killed)."""
    chosen = get_backend(backend)
    print("started", flush=True)
    while True:
        judge_all(chosen, hostile_cases(), workers)
        print("round done", flush=True)


if __name__ == "__main__":
    judge_hostile_forever(sys.argv[1] if len(sys.argv) > 1 else "bwrap")
