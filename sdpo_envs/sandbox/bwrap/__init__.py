"""The ``bwrap`` backend: bubblewrap namespaces, one slot (uid, netns, cgroups) per concurrent
run, limits applied to the sandbox's pid 1 before it starts the program.

``backend`` (the ``SandboxBackend``), ``run`` (one run: spawn, confine, watch, classify),
``setup`` (bwrap's static arguments), ``slots`` and ``cgroups`` (per-slot resources),
``site_check`` (when ``python -S`` is safe).
"""

from .backend import BwrapBackend

__all__ = ["BwrapBackend"]
