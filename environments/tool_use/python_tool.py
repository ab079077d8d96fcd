"""The ``python`` tool: model-written code runs only inside ``sdpo_envs.sandbox``."""

from __future__ import annotations

from typing import Any

from .tools import ToolError, ToolUnavailable

DEFAULT_LIMITS = {"cpu_s": 5.0, "wall_s": 10.0, "memory_mb": 256, "output_bytes": 64 * 1024, "processes": 16}


class PythonTool:
    """Runs code through ``sdpo_envs.sandbox.run_python`` with the env's backend and limits."""

    def __init__(self, backend: Any = "auto", limits: Any = None) -> None:
        self.backend = backend
        self.limits = limits

    def _limits(self) -> Any:
        from sdpo_envs.sandbox import Limits

        if self.limits is None:
            return Limits(**DEFAULT_LIMITS)
        return self.limits if isinstance(self.limits, Limits) else Limits(**dict(self.limits))

    def python(self, code: str) -> str:
        """Run a Python 3 program in an isolated sandbox (no network, no files kept) and return what it printed.

        Args:
            code: The complete program; print the values you need, e.g. "print(sum(range(10)))".
        """
        try:
            from sdpo_envs.sandbox import SandboxUnavailable, run_python
        except ImportError as exc:  # the sandbox package is missing or broken: not the model's fault
            raise ToolUnavailable(f"the sandbox cannot be imported ({exc})") from None
        try:
            result = run_python(code, backend=self.backend, limits=self._limits())
        except SandboxUnavailable as exc:  # no usable backend on this machine
            raise ToolUnavailable(str(exc)) from None
        except Exception as exc:  # run_python never raises for the program's own failures
            raise ToolUnavailable(f"{type(exc).__name__}: {exc}") from None
        if result.status == "sandbox_error":
            raise ToolUnavailable(result.detail or "sandbox error")
        if result.status != "ok":
            tail = (result.stderr or result.detail or "").strip()[-1500:]
            raise ToolError(
                f"the program ended with {result.status} (exit code {result.exit_code})\n{tail}".rstrip()
            )
        return result.stdout
