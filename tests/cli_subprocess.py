"""Run the ``sdpo`` console script as a user does: a child process, this checkout on its path."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_ENV = dict(os.environ)  # as the suite started, before any test ran
SDPO = str(Path(sys.executable).with_name("sdpo"))
# The tiny model, as small as a run gets: a real job in seconds.
TINY_JOB = [
    "--model", "tiny", "--steps", "2", "--batch-size", "2", "--num-generations", "2",
    "--max-completion-length", "8", "--eval-tasks", "1", "--eval-samples", "1", "--eval-every", "0",
]  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("SDPO_DEBUG", None)
    # What an in-process ``main()`` of another test may have left in this process's environment
    # (``quiet_libraries``): a user's shell has neither.
    for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        if name not in ORIGINAL_ENV:
            env.pop(name, None)
    return env


def sdpo(
    *args: str, cwd: Path | None = None, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """``sdpo ARGS`` in ``cwd``; its exit status, stdout and stderr."""
    return subprocess.run(
        [SDPO, *args], cwd=cwd, env=child_env(**env), capture_output=True, text=True, timeout=timeout
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    """The error answer's lines: the headline first, then its detail."""
    return [line for line in done.stderr.splitlines() if line.strip()]


@contextlib.contextmanager
def sdpo_serve(*args: str) -> Iterator[str]:
    """``sdpo serve ARGS --port 0`` in a process of its own; yields the address it serves at,
    and stops it afterwards."""
    proc = subprocess.Popen(
        [SDPO, "serve", *args, "--port", "0"],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("serving "):
            proc.kill()
            raise RuntimeError(
                f"sdpo serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            )
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
