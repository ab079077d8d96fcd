"""A supervised pool of ``math-verify`` worker processes that can be killed.

Why processes: math-verify's timeouts use ``signal.alarm``, which only works on the main
thread, and a check stuck in C code (``\\boxed{9^{9^{9^{9}}}}`` makes SymPy evaluate a
power tower) ignores signals altogether. So every check runs in a worker process, on its
main thread, under a soft SIGALRM timeout; the caller also holds a hard deadline and kills a
worker that misses it, then starts a fresh one. A timeout or a crash is reported as an
error (the env's ``judge_error``), never as a wrong answer.

Usage::

    pool = MathVerifyPool(workers=2, timeout_s=5.0)
    pool.check("\\\\boxed{\\\\frac{1}{2}}", "0.5")       # CheckResult(correct=True, ...)
    pool.check_many([(answer, gold), ...])               # batched over all workers

Any thread may call ``check``/``check_many``: each call borrows an idle worker, sends it a
batch, and reads one reply per pair (a reply is due ``timeout_s + kill_grace_s`` after the
previous one). Workers start lazily and are shared through :func:`shared_math_pool`.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .worker import HEADER, HOOK_PREFIX, pack

__all__ = ["HOOK_PREFIX", "CheckResult", "MathVerifyPool", "shared_math_pool"]

_WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one ``verify(parse(gold), parse(answer))``.

    ``correct`` is None exactly when ``error`` says why the checker itself failed (timeout,
    crashed worker, internal error). ``answer``/``gold`` are ``str`` of the first value
    math-verify parsed from each side, or None when it parsed nothing.
    """

    correct: bool | None
    answer: str | None = None
    gold: str | None = None
    error: str | None = None

    @property
    def judged(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, reason: str) -> CheckResult:
        return cls(correct=None, error=reason)


class _WorkerDied(Exception):
    pass


class _Spawner:
    """Starts workers from one long-lived thread.

    Workers ask the kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``), and
    Linux fires that when the *thread* that forked them exits: a short-lived caller thread
    (a ``ThreadPoolExecutor`` of ``batch_step``) must therefore not be that thread.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdpo-mathverify-spawn")

    def popen(self, argv: list[str]) -> subprocess.Popen:
        return self._executor.submit(
            subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        ).result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _popen(argv: list[str]) -> subprocess.Popen:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner._pid != os.getpid():  # none yet, or we were forked
            _spawner = _Spawner()
        spawner = _spawner
    return spawner.popen(argv)


class _Worker:
    """One worker process and the parent's end of its pipes."""

    def __init__(self) -> None:
        self.proc = _popen([sys.executable, _WORKER_SCRIPT, str(os.getpid())])
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdin
        self._fd = self.proc.stdout.fileno()
        self._buffer = bytearray()
        self.ready = False

    def send(self, message: Any) -> None:
        try:
            self._out.write(pack(message))
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise _WorkerDied(self._death_note()) from exc

    def recv(self, deadline: float) -> Any:
        """The next reply; ``TimeoutError`` past ``deadline`` (monotonic), ``_WorkerDied`` at EOF."""
        while True:
            if len(self._buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self._buffer)
                end = HEADER.size + size
                if len(self._buffer) >= end:
                    message = pickle.loads(bytes(self._buffer[HEADER.size : end]))
                    del self._buffer[:end]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                raise TimeoutError
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise _WorkerDied(self._death_note())
            self._buffer += chunk

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready:
            return
        try:
            message = self.recv(time.monotonic() + timeout_s)
        except TimeoutError:
            raise _WorkerDied(f"checker worker did not start within {timeout_s:g} s") from None
        if not (isinstance(message, tuple) and message[:1] == ("ready",)):
            raise _WorkerDied(f"checker worker sent {message!r} instead of 'ready'")
        self.ready = True

    def _death_note(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "checker worker closed its pipe"
        return f"checker worker died (exit code {code})"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL ends it; reap: no zombies
            self.proc.wait(timeout=5.0)

    def close(self) -> None:
        """Ask an idle worker to exit (EOF), then make sure it did."""
        with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
            self._out.close()
            self.proc.wait(timeout=1.0)
        self.kill()


class MathVerifyPool:
    """Check ``(answer, gold)`` pairs with math-verify in killable worker processes.

    ``workers``: processes (default: CPU count, at most 4). ``timeout_s``: per-check limit
    (soft, in the worker); a worker that has not answered ``kill_grace_s`` after that is
    killed and replaced. ``max_batch``: pairs per round trip in :meth:`check_many`.
    ``check_memory_mb``: how far a worker's address space may grow past its start-up size
    (None: no cap; a check hitting the cap counts as "not equal", as math-verify does).
    ``test_hooks``: let answers starting with ``HOOK_PREFIX`` simulate a slow, hung or
    crashing check (tests only).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = 5.0,
        kill_grace_s: float = 1.0,
        start_timeout_s: float = 60.0,
        max_batch: int = 32,
        check_memory_mb: int | None = 2048,
        test_hooks: bool = False,
    ) -> None:
        if workers is None:
            workers = max(1, min(4, os.cpu_count() or 1))
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0 or kill_grace_s < 0 or start_timeout_s <= 0:
            raise ValueError("timeout_s and start_timeout_s must be > 0 and kill_grace_s >= 0")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.kill_grace_s = kill_grace_s
        self.start_timeout_s = start_timeout_s
        self.max_batch = max_batch
        self._settings = {"check_memory_mb": check_memory_mb, "test_hooks": test_hooks}
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self._reset_state()

    def _reset_state(self) -> None:
        # Slots hold an idle worker, or None: start one when it is next needed.
        self._pid = os.getpid()
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._idle.put(None)
        self._live: set[_Worker] = set()
        self._fanout = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sdpo-mathverify")

    # -- public API ----------------------------------------------------------------------
    def check(self, answer: str, gold: str, *, timeout_s: float | None = None) -> CheckResult:
        """Is ``answer`` equal to ``gold`` for math-verify? Never raises for a checker failure."""
        return self._run_batch([(answer, gold)], timeout_s or self.timeout_s)[0]

    def check_many(
        self, pairs: Sequence[tuple[str, str]], *, timeout_s: float | None = None
    ) -> list[CheckResult]:
        """:meth:`check` for every pair, batched over all workers; results in input order."""
        pairs = [(str(a), str(g)) for a, g in pairs]
        if not pairs:
            return []
        timeout_s = timeout_s or self.timeout_s
        size = max(1, min(self.max_batch, -(-len(pairs) // self.workers)))
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        if len(chunks) == 1:
            return self._run_batch(chunks[0], timeout_s)
        self._check_fork()
        futures = [self._fanout.submit(self._run_batch, chunk, timeout_s) for chunk in chunks]
        return [result for future in futures for result in future.result()]

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring)."""
        with self._lock:
            return sorted(w.proc.pid for w in self._live)

    def close(self) -> None:
        """Stop every worker. Later checks return errors instead of starting new ones."""
        self._check_fork()  # a forked child must not kill its parent's workers
        with self._lock:
            self._closed = True
            live, self._live = list(self._live), set()
        for worker in live:
            worker.close()
        self._fanout.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> MathVerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------
    def _check_fork(self) -> None:
        # A forked child shares its parent's pipes: it must start its own workers.
        if os.getpid() != self._pid:
            with self._lock:
                if os.getpid() != self._pid:
                    self._reset_state()

    def _start_worker(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise _WorkerDied("checker pool is closed")
            worker = _Worker()
            self._live.add(worker)
        try:
            worker.send(self._settings)
        except _WorkerDied:
            self._retire(worker)
            raise
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)
            self.restarts += 1
        worker.kill()

    def _acquire(self) -> _Worker:
        self._check_fork()
        worker = self._idle.get()
        if worker is not None and worker.proc.poll() is not None:  # died while idle
            self._retire(worker)
            worker = None
        try:
            if worker is None:
                worker = self._start_worker()
            worker.wait_ready(self.start_timeout_s)
            return worker
        except (_WorkerDied, OSError):
            if worker is not None:
                self._retire(worker)
            self._idle.put(None)
            raise

    def _release(self, worker: _Worker | None, healthy: bool) -> None:
        if worker is not None and not healthy:
            self._retire(worker)
            worker = None
        if worker is None and not self._closed:
            try:  # start the replacement now: its imports overlap with other work
                worker = self._start_worker()
            except (_WorkerDied, OSError):
                worker = None
        self._idle.put(worker)

    def _run_batch(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[CheckResult]:
        results: list[CheckResult] = []
        while len(results) < len(pairs):
            try:
                worker = self._acquire()
            except (_WorkerDied, OSError) as exc:
                return results + [CheckResult.failed(str(exc))] * (len(pairs) - len(results))
            healthy = True
            try:
                worker.send(("check", pairs[len(results) :], timeout_s))
                while len(results) < len(pairs):
                    reply = worker.recv(time.monotonic() + timeout_s + self.kill_grace_s)
                    results.append(_to_result(reply, timeout_s))
            except TimeoutError:
                # Hung in C code: kill it; the rest of the batch goes to another worker.
                healthy = False
                results.append(CheckResult.failed(f"checker timed out after {timeout_s:g} s (worker killed)"))
            except _WorkerDied as exc:
                healthy = False
                results.append(CheckResult.failed(str(exc)))
            finally:
                self._release(worker, healthy)
        return results


def _to_result(reply: Any, timeout_s: float) -> CheckResult:
    kind = reply[0]
    if kind == "ok":
        return CheckResult(correct=reply[1], answer=reply[2], gold=reply[3])
    if kind == "timeout":
        return CheckResult.failed(f"checker timed out after {timeout_s:g} s")
    return CheckResult.failed(f"checker raised {reply[1]}")


_shared: MathVerifyPool | None = None
_shared_lock = threading.Lock()


def shared_math_pool() -> MathVerifyPool:
    """The process-wide pool the math environments use unless given their own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MathVerifyPool(workers=max(1, min(2, os.cpu_count() or 1)))
            atexit.register(_shared.close)
        return _shared
