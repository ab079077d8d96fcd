"""The entry point of ``harness.zip`` (see ``build``): loads the harness package from the zip,
then runs ``main``. ``python3 -S harness.zip`` runs this file as the zip's top-level
``__main__``; the judge runs the same code through ``-c`` (``sys.argv[0]`` is the zip either
way). It is not a ``python -m`` entry point of the package: the package runs from its zip only.

The zip holds the package in the layout zipimport reads (``sdpo_harness/*.pyc``), but the
modules are loaded here, each read and unmarshalled once, in an order where every module
comes after the modules it imports, so that each relative import finds its module in
``sys.modules``. zipimport would unmarshal every module twice (CPython 3.11 reads the code
once just to learn the file name) and go through the finder machinery for each: the
harness's process then ran 10% more instructions than when it was one ``.pyc`` run as a
script; loaded here, 4% more (callgrind, a HumanEval solution). A module missing from
``MODULES`` still loads, through zipimport, when first imported (the package's ``__path__``
is in the zip).
"""

import marshal
import sys
import zipimport

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds to import: annotations that name it are strings
    from collections.abc import Sequence
    from types import CodeType, ModuleType

PACKAGE = "sdpo_harness"
# Each after the package modules it imports (tests/test_code_judge.py checks the order).
MODULES = (
    "wire",
    "compare",
    "privileges",
    "procs",
    "ipc",
    "worker",
    "zygote",
    "spawn",
    "run",
    "verdict",
    "kinds",
    "loop",
    "main",
)
# The interpreter's bytecode magic, which the probe that compiled the modules also read.
_MAGIC = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def _code(importer: zipimport.zipimporter, path: str) -> "CodeType":
    """The code of the zip's module ``path`` (without suffix): its ``.pyc``, or its source
    in the zip ``build`` ships when it could not precompile."""
    try:
        data = importer.get_data(f"{path}.pyc")
    except OSError:
        return compile(importer.get_data(f"{path}.py"), f"{path}.py", "exec", dont_inherit=True)
    if data[:4] != _MAGIC:
        raise ImportError(f"{path}.pyc was compiled for another Python version")
    return marshal.loads(memoryview(data)[16:])  # after the 16-byte .pyc header


def load(archive: str, package: str, modules: "Sequence[str]") -> None:
    """Load ``package`` from the zip ``archive``: ``modules`` in order, then its ``__init__``."""
    importer = zipimport.zipimporter(archive)

    def new_module(name: str, path: str) -> "ModuleType":
        module = type(sys)(name)
        module.__package__ = package
        module.__loader__ = importer
        module.__file__ = f"{archive}/{path}.pyc"
        sys.modules[name] = module
        return module

    root = new_module(package, f"{package}/__init__")
    root.__path__ = [f"{archive}/{package}"]
    for name in modules:
        if f"{package}.{name}" not in sys.modules:  # not already imported through zipimport
            module = new_module(f"{package}.{name}", f"{package}/{name}")
            exec(_code(importer, f"{package}/{name}"), module.__dict__)
            setattr(root, name, module)
    exec(_code(importer, f"{package}/__init__"), root.__dict__)


load(sys.argv[0], PACKAGE, MODULES)
sys.modules[f"{PACKAGE}.main"].main()
