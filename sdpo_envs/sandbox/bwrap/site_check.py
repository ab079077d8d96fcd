"""Can a Python program run with ``python -S`` (no ``site`` import) without noticing?

Importing ``site`` is about a third of the interpreter's start-up here (~3 ms of ~10 ms):
it scans the site-packages directories and runs their ``.pth`` hooks. A program needs it
only to import third-party packages or to use the helpers ``site`` adds to builtins
(``exit``, ``quit``, ``help``, ``copyright``, ``credits``, ``license``). This check is
conservative: any dynamic import, any non-stdlib import that is not one of the run's own
files, any use of those names, or code that does not parse means "needs site".
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterable

_SITE_BUILTINS = frozenset({"exit", "quit", "help", "copyright", "credits", "license"})
# Names through which code could reach an import or a builtin we cannot see statically.
_DYNAMIC = frozenset(
    {"__import__", "importlib", "import_module", "run_module", "runpy", "site", "pkgutil"}
    | {"builtins", "__builtins__", "eval", "exec", "compile", "globals", "vars", "getattr"}
)
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def needs_site(sources: Iterable[str], local_modules: Iterable[str] = ()) -> bool:
    """True unless every source provably works without ``site``."""
    # Cached: a judge runs the same program once per test case.
    return _needs_site(tuple(sources), frozenset(local_modules))


@functools.lru_cache(maxsize=512)
def _needs_site(sources: tuple[str, ...], local_modules: frozenset[str]) -> bool:
    if not _STDLIB:  # Python < 3.10 cannot tell stdlib modules apart
        return True
    allowed = _STDLIB | local_modules
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return True
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import of the run's own package
                    continue
                names = [node.module or ""]
            elif isinstance(node, ast.Name):
                if node.id in _SITE_BUILTINS or node.id in _DYNAMIC:
                    return True
                continue
            elif isinstance(node, ast.Attribute):
                if node.attr in _DYNAMIC - {"getattr"}:
                    return True
                continue
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in allowed or top in _DYNAMIC:
                    return True
    return False
