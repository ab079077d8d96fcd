"""What the code judge decides and under which limits: the types shared by the judge and
its feedback (``CodeLimits``, ``CaseResult``, ``CodeJudgement``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...feedback import Feedback, Verdict
from ...sandbox import Limits
from .cases import CodeTest


@dataclass(frozen=True)
class CodeLimits:
    """Limits of each test (the harness enforces them) and of the whole run (the sandbox).

    ``time_s`` is CPU time per test; ``wall_s`` per test defaults to ``2 * time_s + 2``.
    ``memory_mb`` caps each test's address space; ``output_mb`` its stdout.
    ``stop_after_timeouts``: after this many tests hit a time limit the rest are skipped
    (and count as failed), so a looping program costs one timeout, not one per test;
    ``None`` runs every test.
    """

    time_s: float = 2.0
    wall_s: float | None = None
    memory_mb: int = 512
    output_mb: float = 4.0
    file_mb: int = 64
    processes: int = 64
    stop_after_timeouts: int | None = 1

    def __post_init__(self) -> None:
        for name in ("time_s", "memory_mb", "output_mb", "file_mb", "processes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"CodeLimits.{name} must be a positive number, got {value!r}")
        if self.stop_after_timeouts is not None and self.stop_after_timeouts < 1:
            raise ValueError(
                f"CodeLimits.stop_after_timeouts must be >= 1 or None, got {self.stop_after_timeouts}"
            )
        if self.wall_s is not None and self.wall_s < self.time_s:
            raise ValueError(f"CodeLimits.wall_s ({self.wall_s}) must be >= time_s ({self.time_s})")

    @property
    def test_wall_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 2 * self.time_s + 2

    def per_test(self) -> dict[str, float | None]:
        """The per-test limits as the harness reads them."""
        return {
            "cpu_s": self.time_s,
            "wall_s": self.test_wall_s,
            "memory_mb": self.memory_mb,
            "output_bytes": int(self.output_mb * (1 << 20)),
            "file_mb": self.file_mb,
            "max_timeouts": self.stop_after_timeouts,
        }

    def for_run(self, n_tests: int, payload_bytes: int) -> Limits:
        """Backstop limits of the sandboxed run as a whole (harness + all tests)."""
        payload_mb = payload_bytes / (1 << 20)
        return Limits(
            cpu_s=n_tests * (math.ceil(self.time_s) + 1.5) + 5.0,
            wall_s=n_tests * self.test_wall_s + 15.0,
            memory_mb=int(self.memory_mb + 192 + 4 * payload_mb),
            # Per test the report holds at most ~3 KB of text, up to 6x that JSON-escaped.
            output_bytes=(1 << 20) + 32768 * n_tests,
            processes=self.processes,
            disk_mb=max(64, self.file_mb),
        )


@dataclass(frozen=True)
class CaseResult:
    """One test's outcome; ``info`` is the harness's raw record (errors, actual output)."""

    index: int
    test: CodeTest
    verdict: str  # a Verdict, or "skipped" (not run after the time-limit budget was spent)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass(frozen=True)
class CodeJudgement:
    """The outcome of judging one solution."""

    verdict: Verdict
    reward: float
    passed: int
    total: int
    feedback: Feedback
    results: tuple[CaseResult, ...] = ()
    isolation: str = ""
    compile_error: dict[str, Any] | None = None
    run_cpu_s: float = 0.0  # CPU time of the whole sandboxed run (harness and every test)
    run_wall_s: float = 0.0

    @property
    def success(self) -> bool:
        return self.verdict == "pass"
