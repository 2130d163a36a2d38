"""One exception tree for axedge (after httpx ``_exceptions.py``).

Every error raised by axedge code derives from :class:`AxedgeError`. Errors carry a
``transient`` marker: transient errors are retried by the runtime (reconnect with backoff),
fatal ones stop the component and are reported. Library exceptions (pymodbus, asyncua,
paho, sqlite3, OSError) are translated once at the boundary with ``raise ... from exc``.

::

    AxedgeError
    ├── ConfigError                     bad configuration (file:line key: message), exit 2
    ├── ConnectorError
    │   ├── NotConnected        (transient) device / server / broker unreachable
    │   ├── ConnectorTimeout    (transient) request timed out
    │   ├── ProtocolError       (transient) exception response, malformed frame
    │   ├── DecodeError                    a value or payload could not be decoded (counted, quarantined)
    │   └── SecurityError                  certificate / identity / TLS rejected (fatal until config changes)
    ├── BufferError
    │   ├── BufferFull          (transient) durable buffer at its byte limit with when_full=block
    │   └── BufferCorrupt                  the buffer file cannot be opened or read
    └── SinkError
        ├── SinkUnavailable     (transient) upstream away, disk momentarily full
        └── DatasetError                   dataset directory unusable / corrupt manifest

Packages that must not import ``edge_agent`` keep their own small trees and are translated at
the boundary: ``dataset_builder.format.DatasetError`` (by the Parquet sink, into
``DatasetError`` / ``SinkUnavailable``) and ``models.errors.ModelError`` with ``TrainingDataError``,
``InputMismatch`` and ``BundleError`` (the anomaly processor keeps the old model or waits, counted).
"""

from __future__ import annotations


class AxedgeError(Exception):
    """Base of all axedge errors."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(AxedgeError):
    """The configuration is invalid. ``problems`` lists ``file:line key: message`` lines."""

    def __init__(self, message: str, problems: list[str] | None = None, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join(self.problems)


class ConnectorError(AxedgeError):
    """A connector failed to read from its source."""


class NotConnected(ConnectorError):
    transient = True


class ConnectorTimeout(ConnectorError):
    transient = True


class ProtocolError(ConnectorError):
    transient = True


class DecodeError(ConnectorError):
    """A value or payload could not be decoded. Counted and quarantined, never fatal to the agent."""


class SecurityError(ConnectorError):
    """Certificate, identity or TLS rejected. Not retried quickly: it needs a config or trust change."""


class BufferError(AxedgeError):  # noqa: A001 - deliberate: axedge's buffer error, namespaced by module
    pass


class BufferFull(BufferError):
    transient = True


class BufferCorrupt(BufferError):
    pass


class SinkError(AxedgeError):
    pass


class SinkUnavailable(SinkError):
    transient = True


class DatasetError(SinkError):
    pass


def is_transient(exc: BaseException) -> bool:
    """True when the runtime should retry after ``exc`` (reconnect with backoff)."""
    if isinstance(exc, AxedgeError):
        return exc.transient
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))
