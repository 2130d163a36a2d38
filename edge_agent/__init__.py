"""axedge edge agent: the runtime that moves samples from connectors to sinks.

Heavy libraries are imported lazily so that ``axedge --help`` stays fast.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("axedge")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
