"""Errors raised by ``models``: all derive from :class:`edge_agent.errors.AxedgeError`.

::

    ModelError
    ├── TrainingDataError   the data cannot train a model (no numeric signals, too few rows)
    ├── InputMismatch       scoring data or the agent's catalog lacks a signal / has another unit
    └── BundleError         a bundle directory is missing, corrupt or inconsistent
"""

from __future__ import annotations

from edge_agent.errors import AxedgeError


class ModelError(AxedgeError):
    """Base of the anomaly-model errors."""


class TrainingDataError(ModelError):
    pass


class InputMismatch(ModelError):
    pass


class BundleError(ModelError):
    pass
