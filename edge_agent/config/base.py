"""Shared config building blocks used by every connector and sink config model.

Connector config models subclass :class:`ConnectorConfigBase` and set ``type`` to a
``Literal``; signal models subclass :class:`SignalConfigBase`. Nothing here does I/O.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edge_agent.signals import DataType

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_LEVEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


def _check_id(v: str) -> str:
    if not _ID.match(v):
        raise ValueError("must start with a letter and use only letters, digits, '_' and '-' (max 63)")
    return v


def _check_name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError("must use only letters, digits, '_', '.' and '-' (max 128)")
    return v


def _check_asset(v: str) -> str:
    parts = [p for p in v.strip().strip("/").split("/")]
    if not parts or parts == [""]:
        raise ValueError("asset path must not be empty")
    if len(parts) > 5:
        raise ValueError("asset path has at most 5 levels: site/area/line/cell/asset")
    for p in parts:
        if not _LEVEL.match(p):
            raise ValueError(f"asset path level {p!r} must use only letters, digits, '_', '.' and '-'")
    return "/".join(parts)


ComponentId = Annotated[str, AfterValidator(_check_id)]
SignalName = Annotated[str, AfterValidator(_check_name)]
AssetPath = Annotated[
    str,
    AfterValidator(_check_asset),
    Field(description="ISA-95 style asset path, 1-5 levels: site/area/line/cell/asset", examples=["plant1/casting/line1/pourer"]),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, validate_default=True)


class OnStartupError(str, Enum):
    """What the runtime does when a connector cannot connect at startup (Telegraf tsd-006)."""

    error = "error"  # stop the agent with an error
    retry = "retry"  # keep retrying with backoff, the rest of the agent runs
    ignore = "ignore"  # log, mark the connector stopped, the rest of the agent runs


class SignalConfigBase(StrictModel):
    name: SignalName = Field(description="Signal name, unique within its asset")
    unit: str | None = Field(None, description="Unit of the value (UCUM code preferred, e.g. 'Cel', 'kg', 'mm/s', '%')")
    asset: AssetPath | None = Field(None, description="Asset path; defaults to the connector's asset")
    semantic_id: str | None = Field(None, description="Semantic identifier (e.g. an ECLASS IRDI or an OPC UA type)")
    description: str | None = Field(None, description="Free text for people")


class ConnectorConfigBase(StrictModel):
    """Envelope fields read by the runtime for every connector."""

    id: ComponentId = Field(description="Unique connector id (used in metrics, logs and provenance)")
    type: str
    enabled: bool = Field(True, description="Set false to keep the section but not run it")
    asset: AssetPath = Field(description="Default asset path for this connector's signals")
    on_startup_error: OnStartupError = Field(
        OnStartupError.retry, description="error: stop the agent; retry: keep retrying with backoff; ignore: give up on this connector"
    )
    backoff_initial_secs: float = Field(0.5, gt=0, le=60, description="First reconnect delay")
    backoff_max_secs: float = Field(30.0, gt=0, le=3600, description="Cap of the exponential, jittered reconnect delay")

    def signal_configs(self) -> list[SignalConfigBase]:
        """Signals declared in this section (connectors with discovery may declare none)."""
        return list(getattr(self, "signals", []) or [])


__all__ = [
    "AssetPath",
    "ComponentId",
    "ConnectorConfigBase",
    "DataType",
    "OnStartupError",
    "SignalConfigBase",
    "SignalName",
    "StrictModel",
]
