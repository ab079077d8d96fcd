"""Fixtures the test files share.

``backend``: a sandbox backend that can run here. A test file says which backends its tests run
on with ``SANDBOX_BACKENDS = ("bwrap", "docker")`` (each test then runs once per backend) and
whether it wants the backend's name or an instance with ``BACKEND_AS = "name" | "instance"``;
a backend that cannot start is skipped with the reason the backend itself gives (bubblewrap
missing, no Docker engine answering). Docker cases carry the ``docker`` marker, so
``-m "not docker"`` leaves them out. ``SDPO_CODE_BACKEND`` replaces the list of a file that
declares ``SANDBOX_BACKENDS_FROM_ENV = True`` (run the code-judge suite against docker).
"""

from __future__ import annotations

import os

import pytest

from sdpo_envs.sandbox import SandboxBackend, get_backend
from tests.sandbox_kit import unavailable_reason


def _declared_backends(module: object) -> tuple[str, ...]:
    if getattr(module, "SANDBOX_BACKENDS_FROM_ENV", False) and os.environ.get("SDPO_CODE_BACKEND"):
        return (os.environ["SDPO_CODE_BACKEND"],)
    return tuple(getattr(module, "SANDBOX_BACKENDS", ()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = _declared_backends(metafunc.module)
    if "backend" in metafunc.fixturenames and names:
        params = [pytest.param(n, id=n, marks=[pytest.mark.docker] if n == "docker" else []) for n in names]
        metafunc.parametrize("backend", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str | SandboxBackend:
    name = request.param
    reason = unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"sandbox backend {name!r} is unavailable here: {reason}")
    return get_backend(name) if getattr(request.module, "BACKEND_AS", "name") == "instance" else name
