"""``Outcome``: what became of one call an executor ran, whichever machine ran it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OutcomeKind = Literal["ok", "raised", "timeout", "infrastructure"]


@dataclass(frozen=True)
class Outcome:
    """One call's result: ``value`` when ``kind == "ok"``, else ``error`` says why there is none.

    ``raised``: the call itself raised (an env or judge bug); ``timeout``: it ran past the
    executor's backstop; ``infrastructure``: the machinery kept failing (a worker or node died
    on every attempt), never the call's own doing.
    """

    kind: OutcomeKind
    value: Any = None
    error: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @classmethod
    def of_exception(cls, exc: BaseException) -> Outcome:
        return cls("raised", error=f"{type(exc).__name__}: {exc}")


def run_call(fn: Any, item: Any) -> Outcome:
    """``fn(item)`` as an ``Outcome``: an exception it raises becomes a ``raised`` outcome."""
    try:
        return Outcome("ok", fn(item))
    except Exception as exc:  # the call's own failure, reported, never raised into the batch
        return Outcome.of_exception(exc)
