"""A hostile program must never change an honest program's verdict (issue 27).

Measured the way it was found: the hostile table of ``hostile_programs`` (floods of
processes, threads, memory, fds and disk, programs that kill or stop their own judge, busy
trees, escaping daemons) judged through ``sdpo/CodeExec-v0`` at the same time as HumanEval
canonical solutions, (a) through one worker pool in this process and (b) while another
process judges the hostile table; every honest verdict must be the one it gets alone (all
pass). Some honest solutions are CPU-bound (``HEAVY_PREFIX``): on a busy machine they wait
for a CPU, and that wait is their neighbours' doing, not theirs. Also here, each channel
closed on its own: a process left behind under a sandbox uid, a sandbox killed from outside,
a test starved of CPU. No timing is asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hostile_programs import HOSTILE, honest_cases, hostile_cases, judge_all

from sdpo_envs.judges import CodeLimits, judge_code
from sdpo_envs.sandbox import (
    ExecResult,
    Isolation,
    Limits,
    SandboxBackend,
    available_backends,
    get_backend,
    identity,
)
from sdpo_envs.sandbox.docker.backend import DockerBackend
from sdpo_envs.sandbox.starvation import STARVED, stretched_deadline

HERE = os.path.dirname(os.path.abspath(__file__))
N_HONEST, N_HEAVY = 32, 3
_reasons: dict[str, str | None] = {}


def _reason(name: str) -> str | None:
    if not _reasons:
        _reasons.update(available_backends())
    return _reasons[name]


# Enough warm containers for the pool's workers and the burners below (the default is the
# CPU count): a judge waiting for a container proves nothing about isolation.
DOCKER_POOL = 6


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def backend(request):
    reason = _reason(request.param)
    if reason is not None:
        pytest.skip(f"sandbox backend {request.param!r} is unavailable here: {reason}")
    if request.param == "docker":
        chosen = DockerBackend(pool_size=DOCKER_POOL)
        yield chosen
        chosen.close()
    else:
        yield get_backend(request.param)


@pytest.fixture(scope="module")
def honest(backend):
    """The honest cases and their verdicts judged alone (all pass, or the premise is wrong)."""
    cases = honest_cases(N_HONEST, heavy=N_HEAVY)
    alone = judge_all(backend, cases)
    assert all(r["verdict"] == "pass" for r in alone), [
        r["feedback"][:300] for r in alone if r["verdict"] != "pass"
    ]
    return cases, alone


def _assert_same(cases, alone, beside) -> None:
    changed = {
        index: (a["verdict"], b["verdict"], b["feedback"][:400])
        for (index, _answer), a, b in zip(cases, alone, beside)
        if (a["verdict"], a["reward"]) != (b["verdict"], b["reward"])
    }
    assert not changed, changed


def test_hostile_programs_in_the_same_pool_change_no_honest_verdict(backend, honest):
    cases, alone = honest
    hostile = hostile_cases()
    # Interleaved, so that every honest run has hostile ones beside it in the pool.
    mixed, where = [], []
    for i, case in enumerate(cases):
        if i < len(hostile):
            mixed.append(hostile[i])
        where.append(len(mixed))
        mixed.append(case)
    results = judge_all(backend, mixed, workers=4)
    _assert_same(cases, alone, [results[i] for i in where])
    hostile_results = [r for i, r in enumerate(results) if i not in set(where)]
    assert len(hostile_results) == len(HOSTILE)
    assert all(r["verdict"] != "pass" for r in hostile_results), hostile_results  # they did attack


def test_hostile_programs_in_another_process_change_no_honest_verdict(backend, honest):
    cases, alone = honest
    neighbour = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "hostile_programs.py"), backend.name],
        env={**os.environ, "SDPO_DOCKER_POOL_SIZE": str(DOCKER_POOL)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert neighbour.stdout.readline().strip() == "started"  # type: ignore[union-attr]
        time.sleep(2.0)  # its floods and burners are under way (not a timing assertion)
        assert neighbour.poll() is None, "the hostile neighbour stopped"
        beside = judge_all(backend, cases)
        assert neighbour.poll() is None, "the hostile neighbour stopped"
    finally:
        os.killpg(neighbour.pid, signal.SIGKILL)
        neighbour.wait()
    _assert_same(cases, alone, beside)


# ---------------------------------------------------------------------- channels, one by one
needs_root = pytest.mark.skipif(
    not identity.can_switch_thread_credentials(), reason="switching uids needs root here"
)


def _run_as(uid: int, argv: list[str]) -> subprocess.Popen:
    with identity.thread_credentials(uid, uid):
        return subprocess.Popen(argv, start_new_session=True)


@needs_root
def test_a_process_left_behind_under_a_uid_is_killed_before_the_uid_is_leased_again():
    lease = identity.lease_uid()
    uid = lease.uid
    leftover = _run_as(uid, ["/bin/sleep", "60"])  # as if escaped from an earlier run
    lease.release()  # released without a sweep: a dead judge process leaves it so
    try:
        identity._next[0] = uid - identity.UID_BASE  # the next lease tries that uid first
        again = identity.lease_uid()
        assert again.uid == uid
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        again.release()
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


@needs_root
def test_releasing_a_lease_with_sweep_kills_what_the_run_left():
    lease = identity.lease_uid()
    leftover = _run_as(lease.uid, ["/bin/sleep", "60"])
    bystander = subprocess.Popen(["/bin/sleep", "60"])  # ours (root): must survive
    try:
        lease.release(sweep=True)
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        for proc in (leftover, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _kill_sandbox_from_outside(marker: str, match: str) -> threading.Thread:
    """After a moment, SIGKILL the host process whose command line holds ``marker`` and ``match``."""

    def killer() -> None:
        for _ in range(200):
            time.sleep(0.05)
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if marker in cmd and cmd.split(" ", 1)[0].endswith(match):
                    os.kill(int(pid), signal.SIGKILL)
                    return

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("victim", ["bwrap", "python3"])
def test_a_bwrap_sandbox_killed_from_outside_is_a_rerun_not_the_programs_failure(victim):
    if _reason("bwrap") is not None:
        pytest.skip(f"bwrap unavailable: {_reason('bwrap')}")
    sandbox = get_backend("bwrap")
    marker = f"outside-kill-{victim}-{os.getpid()}"
    thread = _kill_sandbox_from_outside(marker, victim)
    result = sandbox.run(
        [sandbox.python, "-c", f"import time; time.sleep(20)  # {marker}"], limits=Limits(wall_s=30)
    )
    thread.join()
    assert result.status == "sandbox_error" and result.rerun, result
    assert "killed from outside the sandbox" in result.detail


def test_a_program_that_kills_itself_is_still_its_own_failure():
    if _reason("bwrap") is not None:
        pytest.skip(f"bwrap unavailable: {_reason('bwrap')}")
    sandbox = get_backend("bwrap")
    result = sandbox.run([sandbox.python, "-c", "import ctypes; ctypes.string_at(0)"])
    assert result.status == "runtime_error" and not result.rerun, result


class _Spoiled(SandboxBackend):
    """A real backend whose first ``spoiled`` runs are spoiled from outside (as a sandbox
    killed by the host's OOM killer reports it); later runs are real."""

    name = "spoiled"

    def __init__(self, real: SandboxBackend, spoiled: int) -> None:
        self.real, self.left, self.runs = real, spoiled, 0

    @classmethod
    def probe(cls) -> str | None:
        return None

    @property
    def python(self) -> str:
        return self.real.python

    def run(self, argv, **kwargs) -> ExecResult:
        self.runs += 1
        if self.left:
            self.left -= 1
            return ExecResult(
                "sandbox_error", None, "", "", 0.0, 0.0, None, Isolation("x"), "killed", rerun=True
            )
        return self.real.run(argv, **kwargs)


def test_a_spoiled_run_is_judged_again_and_never_scored(backend):
    real = backend
    tests = [{"kind": "call", "fn": "add", "args": [1, 2], "expected": 3}]
    real.run([real.python, "-c", "pass"])  # warm
    spoiled = _Spoiled(real, 2)
    spoiled.left = 0
    judge_code("def add(a, b):\n    return a + b\n", tests, backend=spoiled)  # builds the harness (probe)
    spoiled.left, spoiled.runs = 2, 0
    result = judge_code("def add(a, b):\n    return a + b\n", tests, backend=spoiled)
    assert result.verdict == "pass" and spoiled.runs == 3  # two spoiled runs, then a real one
    spoiled.left, spoiled.runs = 99, 0
    result = judge_code("def add(a, b):\n    return a + b\n", tests, backend=spoiled)
    assert result.verdict == "judge_error" and spoiled.runs == 3
    assert "infrastructure" in str(result.feedback.details)


_BUSY = "import os, sys; os.sched_setaffinity(0, {0})\nwhile True: pass"
_IDLE = "import os; os.sched_setaffinity(0, {0}); os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass"


def test_the_wall_clock_is_charged_for_sleeping_but_not_for_waiting_on_a_busy_cpu():
    # Real processes: one sleeps; one is runnable all the time but queued behind a busy
    # neighbour on its only CPU (it runs at SCHED_IDLE, as sandboxed programs do).
    start = time.monotonic()
    sleeper = subprocess.Popen(["/bin/sleep", "30"])
    busy = subprocess.Popen([sys.executable, "-c", _BUSY])
    starved = subprocess.Popen([sys.executable, "-c", _IDLE])
    try:
        time.sleep(1.5)
        now = time.monotonic()
        assert stretched_deadline(start, 0.5, now, sleeper.pid) is None  # its own time
        later = stretched_deadline(start, 0.5, now, starved.pid)
        assert later is not None, "time spent queued behind a neighbour was charged to the program"
        assert later == STARVED or later > now
    finally:
        for proc in (sleeper, busy, starved):
            proc.kill()
            proc.wait()


def test_a_cpu_bound_honest_test_passes_while_busy_neighbours_hold_the_cpus(backend):
    # Four busy trees (twice the cores here), all the time a CPU-bound honest solution runs
    # under a wall clock as tight as its CPU limit. Measured before this was fixed: docker 3 of
    # 4 such runs timed out on the wall clock.
    real = backend
    burner = "while True:\n    pass\n"
    limits = CodeLimits(time_s=1.0, wall_s=1.0)  # a wall clock that waiting would overrun
    heavy = "def add(a, b):\n    sum(i * i for i in range(2_000_000))\n    return a + b\n"
    tests = [{"kind": "call", "fn": "add", "args": [1, 2], "expected": 3}]
    alone = judge_code(heavy, tests, backend=real, limits=limits)
    assert alone.verdict == "pass", alone.feedback.text
    burners = [
        threading.Thread(
            target=judge_code,
            args=(burner, tests),
            kwargs={"backend": real, "limits": CodeLimits(time_s=2.0)},
        )
        for _ in range(4)
    ]
    for thread in burners:
        thread.start()
    try:
        time.sleep(0.5)  # the burners are under way (not a timing assertion)
        beside = [judge_code(heavy, tests, backend=real, limits=limits) for _ in range(2)]
    finally:
        for thread in burners:
            thread.join()
    assert [b.verdict for b in beside] == ["pass", "pass"], [b.feedback.text for b in beside]
