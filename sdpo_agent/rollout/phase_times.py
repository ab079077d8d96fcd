"""Where the time of an optimizer step goes: wall and process-CPU seconds per named phase.

The trainers measure ``prepare`` (building a generation batch), inside it ``generate`` (the
backend's sampling) and ``judge`` (environment steps), ``loss`` (``compute_loss``), inside it
``student_forward`` and ``teacher_forward``, ``training_step`` (loss and backward) and
``teacher_update``. At the end of each optimizer step the trainer hands the step's phases to
every callback with an ``on_step_phases(..., phases=)`` method and logs them as
``timing/<phase>_s``; ``bench/trainer_step.py`` reads them that way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar


class PhaseTimes:
    """Wall and CPU seconds per phase, accumulated until :meth:`take`.

    Phases nest and each is timed on its own, so ``loss`` includes ``teacher_forward``. CPU time
    is the whole process's (all threads), which other processes' load skews least. Two clock
    reads per phase, nothing else.
    """

    def __init__(self) -> None:
        self._seconds: dict[str, list[float]] = {}

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            cell = self._seconds.setdefault(phase, [0.0, 0.0])
            cell[0] += time.perf_counter() - wall
            cell[1] += time.process_time() - cpu

    def take(self) -> dict[str, tuple[float, float]]:
        """The phases measured since the last call, as ``{phase: (wall_s, cpu_s)}``; then empty."""
        taken = {phase: (cell[0], cell[1]) for phase, cell in self._seconds.items()}
        self._seconds.clear()
        return taken


class HasPhaseTimes(Protocol):
    phase_times: PhaseTimes


Owner = TypeVar("Owner", bound=HasPhaseTimes)
Params = ParamSpec("Params")
Result = TypeVar("Result")


def timed_phase(
    phase: str,
) -> Callable[[Callable[Concatenate[Owner, Params], Result]], Callable[Concatenate[Owner, Params], Result]]:
    """Decorate a method so each call counts as ``phase`` in its owner's ``phase_times``."""

    def decorate(
        method: Callable[Concatenate[Owner, Params], Result],
    ) -> Callable[Concatenate[Owner, Params], Result]:
        @functools.wraps(method)
        def timed(self: Owner, *args: Params.args, **kwargs: Params.kwargs) -> Result:
            with self.phase_times.measure(phase):
                return method(self, *args, **kwargs)

        return timed

    return decorate
