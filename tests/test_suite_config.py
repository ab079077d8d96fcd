"""The suite's own promises: no test can hang it, and every declared marker is used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

TESTS = Path(__file__).resolve().parent


def test_every_test_has_a_time_limit(request: pytest.FixtureRequest) -> None:
    assert float(request.config.getini("timeout")) > 0


def test_every_declared_marker_is_used(request: pytest.FixtureRequest) -> None:
    # The project's own markers (getini("markers") also lists every plugin's).
    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {line.split(":")[0].strip() for line in config["tool"]["pytest"]["ini_options"]["markers"]}
    assert declared, "pyproject.toml declares no marker"
    sources = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.glob("*.py"))
    used = set(re.findall(r"pytest\.mark\.(\w+)", sources))
    assert declared - used == set(), "declared in pyproject.toml but used by no test"
