"""The ``docker`` backend: warm containers on a real engine, an in-container supervisor
(``supervisor``, stdlib only) per run, the image built locally (``image``).
"""

from .backend import DockerBackend

__all__ = ["DockerBackend"]
