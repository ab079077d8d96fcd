"""The public API's docstring examples run as written (``doctest``), in the style of
Gymnasium's wrappers: an example that drifts from the code fails here."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "sdpo_envs.core",
    "sdpo_envs.spaces",
    "sdpo_envs.feedback",
    "sdpo_envs.registry",
    "sdpo_envs.sandbox.registry",
    "sdpo_envs.tags",
    "sdpo_agent.config",
    "sdpo_agent.trainers.sdpo",
    "sdpo_agent.trainers.grpo",
    "sdpo_agent.jobs.compare",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, globs={**vars(module), "tmp_path": tmp_path}) if t.examples]
    assert tests, f"{name} has no docstring example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name} (see the output above)"
