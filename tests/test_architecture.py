"""The layout's promises, checked on the source: imports run one way, no cycles, small modules.

Layers of ``sdpo_agent`` (a package may import only from lower ranks or itself):
cli -> jobs -> trainers -> (rollout, reprompt, teacher, losses, rewards) -> (config, teacher_storage)
-> (models, config_compat).
``sdpo_envs`` and ``environments`` never import ``sdpo_agent``; ``sdpo_envs`` finds
``environments`` through entry points, never by import.

The command line imports its command modules and their runners by name, from one dispatch
point (``COMMANDS`` and ``RUNNERS`` in ``sdpo_agent/cli/__init__.py``); those names count here
as imports of ``sdpo_agent.cli``, so the lazy targets obey the same rules.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sdpo_agent", "sdpo_envs", "environments")
AGENT_RANKS = {
    "cli": 6,
    "jobs": 5,
    "trainers": 4,
    "rollout": 3,
    "reprompt": 3,
    "teacher": 3,
    "teacher_storage": 2,
    "losses": 3,
    "rewards": 3,
    "config": 2,
    "config_compat": 1,
    "models": 1,
}
MAX_LINES = 500
DISPATCH = ROOT / "sdpo_agent" / "cli" / "__init__.py"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads (``from pkg import sub`` counts as ``pkg.sub``)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return sorted({n for n in names if n.split(".")[0] in PACKAGES})


def _table(tree: ast.Module, name: str) -> dict[str, str]:
    """The string-to-string dict literal assigned to ``name`` at the top of a module."""
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return {
                ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(node.value.keys, node.value.values)
            }
    raise AssertionError(f"no {name} table in {DISPATCH}")


@cache
def _lazy_targets() -> list[str]:
    """The modules the CLI's dispatch point imports by name: each command's module and runner."""
    tree = ast.parse(DISPATCH.read_text(encoding="utf-8"))
    commands = [f"sdpo_agent.cli.{name}" for name in _table(tree, "COMMANDS")]
    runners = [target.partition(":")[0] for target in _table(tree, "RUNNERS").values()]
    return sorted(set(commands + runners))


@cache
def _imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported project module, inside a function?)]."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {
            id(node)
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)
        }
        found[module] = [
            (target, id(node) in nested)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for target in _targets(module, node)
        ]
    found["sdpo_agent.cli"] += [(target, False) for target in _lazy_targets()]
    return found


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _imports_where(keep) -> list[str]:
    """``module -> target`` of every project import for which ``keep(module, target, in_function)``."""
    return [
        f"{module} -> {target}"
        for module, imports in _imports().items()
        for target, in_function in imports
        if keep(module, target, in_function)
    ]


def _inverted(module: str, target: str) -> bool:
    """A cross-layer import inside sdpo_agent that points up (or sideways) the ranks."""
    if not (module.startswith("sdpo_agent.") and target.startswith("sdpo_agent.")):
        return False
    if _layer(module) not in AGENT_RANKS or _layer(target) == _layer(module):
        return False
    return AGENT_RANKS.get(_layer(target), 99) >= AGENT_RANKS[_layer(module)]


def test_sdpo_agent_layers_import_one_way():
    wrong = _imports_where(lambda module, target, _: _inverted(module, target))
    assert not wrong, wrong


def test_environments_never_import_the_agent_and_the_core_never_imports_environments():
    wrong = _imports_where(
        lambda module, target, _: (
            (not module.startswith("sdpo_agent") and target.startswith("sdpo_agent"))
            or (module.startswith("sdpo_envs") and target.startswith("environments"))
        )
    )
    assert not wrong, wrong


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _ in imports if t != m} for m, imports in _imports().items()}
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, cycles


def test_no_function_level_import_within_a_package():
    # Deferred imports hide cycles; across packages (environments -> sdpo_envs) they only defer cost.
    wrong = _imports_where(
        lambda module, target, in_function: in_function and target.split(".")[0] == module.split(".")[0]
    )
    assert not wrong, wrong


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_needs_scrolling(package):
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_checks_see_a_cycle_and_a_wrong_way_import():
    # The helpers must be able to fail: a two-module cycle is found, a layer inversion is ranked.
    assert [sorted(c) for c in _strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) if len(c) > 1] == [
        ["a", "b"]
    ]
    assert AGENT_RANKS["models"] < AGENT_RANKS["trainers"] < AGENT_RANKS["cli"]
    assert _inverted("sdpo_agent.models.resolve", "sdpo_agent.jobs.train")
    assert not _inverted("sdpo_agent.jobs.train", "sdpo_agent.models.resolve")
    assert ("sdpo_agent.config", False) in _imports()["sdpo_agent.trainers.base"]


def test_every_lazy_target_of_the_dispatch_exists():
    tree = ast.parse(DISPATCH.read_text(encoding="utf-8"))
    assert set(_table(tree, "RUNNERS")) == set(_table(tree, "COMMANDS"))
    for command, target in _table(tree, "RUNNERS").items():
        module, _, function = target.partition(":")
        assert module in _modules(), (command, target)
        defined = {
            n.name for n in ast.parse(_modules()[module].read_text()).body if isinstance(n, ast.FunctionDef)
        }
        assert function in defined, (command, target)
    # the lazy edges are in the graph the layer and cycle rules check
    assert ("sdpo_agent.cli.runners.train", False) in _imports()["sdpo_agent.cli"]
    assert "sdpo_agent.cli.train" in _lazy_targets()


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the import graph is deep enough to matter)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components
