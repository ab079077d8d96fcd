"""The supervised math-verify checker pool: real math-verify in real worker processes."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from math_verify import parse, verify

from sdpo_envs.judges.math.pool import HOOK_PREFIX, CheckResult, MathVerifyPool


@pytest.fixture(scope="module")
def pool():
    with MathVerifyPool(workers=2, timeout_s=5.0, kill_grace_s=2.0, test_hooks=True) as p:
        yield p


def test_checks_correct_and_incorrect_answers(pool):
    right = pool.check("$\\boxed{\\frac{1}{2}}$", "$0.5$")
    assert right == CheckResult(correct=True, answer="1/2", gold="1/2")
    wrong = pool.check("$\\boxed{3}$", "$4$")
    assert wrong.judged and wrong.correct is False and wrong.answer == "3"


def test_nothing_parsed_is_reported_as_none(pool):
    result = pool.check("$\\boxed{\\frac{1}{}}$", "$4$")
    assert result.judged and result.correct is False and result.answer is None and result.gold == "4"


PAIRS = [
    ("$\\boxed{2450}$", "$2450$"),
    ("$\\boxed{2,450}$", "$2450$"),
    ("$\\boxed{\\frac{6}{8}}$", "$0.75$"),
    ("$\\boxed{0.7}$", "$0.75$"),
    ("$\\boxed{(x+1)^2}$", "$x^2 + 2x + 1$"),
    ("$\\boxed{\\sqrt{8}}$", "$2\\sqrt{2}$"),
    ("$\\boxed{\\{1, 2\\}}$", "$\\{2, 1\\}$"),
    ("$\\boxed{-3}$", "$3$"),
    ("the answer is $\\boxed{\\pi/2}$", "$\\frac{\\pi}{2}$"),
    ("$\\boxed{x = 5}$", "$5$"),
] * 3


def test_check_many_agrees_with_direct_math_verify_in_order(pool):
    results = pool.check_many(PAIRS)
    direct = [verify(parse(gold), parse(answer)) for answer, gold in PAIRS]
    assert [r.correct for r in results] == direct
    assert any(direct) and not all(direct)


def test_requests_from_many_threads(pool):
    pairs = [(f"$\\boxed{{{i}}}$", f"${i % 5}$") for i in range(40)]
    with cf.ThreadPoolExecutor(8) as executor:
        results = list(executor.map(lambda pair: pool.check(*pair), pairs))
    assert [r.correct for r in results] == [i % 5 == i for i in range(40)]


def test_soft_timeout_is_an_error_and_keeps_the_worker(pool):
    restarts = pool.restarts
    result = pool.check(HOOK_PREFIX + "sleep:60", "$1$", timeout_s=0.3)
    assert result.correct is None and "timed out" in result.error
    assert pool.restarts == restarts
    assert pool.check("$\\boxed{1}$", "$1$").correct is True


def test_hung_worker_is_killed_and_replaced(pool):
    restarts = pool.restarts
    result = pool.check(HOOK_PREFIX + "hang", "$1$", timeout_s=0.3)
    assert result.correct is None and "worker killed" in result.error
    assert pool.restarts == restarts + 1
    for _ in range(4):  # every worker, the replacement included, still answers
        assert pool.check("$\\boxed{7}$", "$7$").correct is True


def test_crashed_worker_is_an_error_and_replaced(pool):
    result = pool.check(HOOK_PREFIX + "crash:7", "$1$")
    assert result.correct is None and "exit code 7" in result.error
    assert pool.check("$\\boxed{7}$", "$7$").correct is True


def test_a_hang_inside_a_batch_spares_the_other_checks(pool):
    pairs = [(f"$\\boxed{{{i}}}$", f"${i}$") for i in range(10)]
    pairs[4] = (HOOK_PREFIX + "hang", "$1$")
    results = pool.check_many(pairs, timeout_s=0.3)
    assert results[4].correct is None
    assert all(r.correct for i, r in enumerate(results) if i != 4)


def test_pathological_input_is_an_error_not_a_verdict(pool):
    # SymPy evaluating a power tower: math-verify's own signal timeout cannot stop it.
    result = pool.check("$\\boxed{9^{9^{9^{9}}}}$", "$4$", timeout_s=0.5)
    assert result.correct is None and "timed out" in result.error
    assert pool.check("$\\boxed{4}$", "$4$").correct is True


def test_closed_pool_answers_with_errors():
    closed = MathVerifyPool(workers=1)
    closed.close()
    assert closed.check("$\\boxed{1}$", "$1$").error == "checker pool is closed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_their_parent(tmp_path: Path):
    # A worker hung in C never reads its pipe again: the kernel must kill it with its parent.
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, threading, time
            from sdpo_envs.judges.math.pool import MathVerifyPool
            pool = MathVerifyPool(workers=1, test_hooks=True)
            pool.check("$1$", "$1$")
            threading.Thread(target=pool.check, args=({HOOK_PREFIX!r} + "hang", "$1$"), daemon=True).start()
            time.sleep(0.3)
            print(*pool.worker_pids(), flush=True)
            os._exit(0)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
