"""The top-level configuration model. Connector and sink sections are discriminated by ``type``
and come from the explicit registries (``connectors.registry``, ``edge_agent.sinks.registry``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from connectors.registry import connector_config_models
from edge_agent.config.base import ComponentId, StrictModel
from edge_agent.core.channel import WhenFull
from edge_agent.processors.anomaly import AnomalyProcessorConfig
from edge_agent.sinks.registry import sink_config_models


class LogFormat(str, Enum):
    auto = "auto"  # live status line on a terminal, key=value logs otherwise
    text = "text"
    json = "json"


class HttpConfig(StrictModel):
    enabled: bool = Field(True, description="Serve /metrics (Prometheus) and /healthz")
    listen_host: str = Field("127.0.0.1", description="Bind address; keep loopback unless a firewall protects the gateway")
    listen_port: int = Field(9108, ge=0, le=65535, description="TCP port (0 = pick a free port)")
    token: SecretStr | None = Field(
        None, description="Access token for the status page and API (required when listen_host is not loopback); "
        "use ${env:NAME} or ${file:/run/credentials/...}; default: $AXEDGE_HTTP_TOKEN")


class AgentSection(StrictModel):
    id: ComponentId = Field("gateway", description="Gateway id, recorded as provenance in datasets")
    data_dir: Path = Field(Path("./axedge-data"), description="Dataset root (raw layer under raw/)")
    state_dir: Path = Field(Path("./axedge-state"), description="Durable buffers, certificates, quarantine")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="debug|info|warning|error")
    log_format: LogFormat = Field(LogFormat.auto, description="auto|text|json")
    shutdown_deadline_secs: float = Field(20.0, gt=0, le=600, description="Time allowed to flush and commit on SIGTERM")
    http: HttpConfig = Field(default_factory=HttpConfig)


class BatchSection(StrictModel):
    max_rows: int = Field(50_000, ge=1, description="Flush the batch at this many rows")
    max_bytes: ByteSize = Field(ByteSize(8 * 1024 * 1024), description="Flush the batch at this size (e.g. 8MiB)")
    max_age_secs: float = Field(1.0, gt=0, le=3600, description="Flush a batch this old even if small")


class CoreSection(StrictModel):
    channel_max_chunks: int = Field(1024, ge=1, description="Chunks queued between connectors and the batcher")
    channel_max_rows: int = Field(200_000, ge=1, description="Rows queued between connectors and the batcher (a hand-off: bursts go to the buffer)")
    when_full: WhenFull = Field(WhenFull.block, description="block: back-pressure connectors; drop_newest / drop_oldest: drop and count")
    batch: BatchSection = Field(default_factory=BatchSection)


class BufferKind(str, Enum):
    sqlite = "sqlite"  # durable: survives SIGKILL (and power loss with fsync=full)
    memory = "memory"  # not durable: lost on crash; for tests and throwaway runs


class FsyncMode(str, Enum):
    off = "off"  # SQLite synchronous=OFF: survives process crash, not power loss
    normal = "normal"  # synchronous=NORMAL (WAL): survives process crash; power loss may lose the last commits
    full = "full"  # synchronous=FULL: every committed batch survives power loss


class BufferSection(StrictModel):
    kind: BufferKind = Field(BufferKind.sqlite, description="sqlite (durable) or memory")
    max_bytes: ByteSize = Field(ByteSize(1024**3), description="Upper bound of buffered data per sink (e.g. 1GiB)")
    when_full: WhenFull = Field(WhenFull.block, description="block | drop_oldest | drop_newest, each drop counted")
    fsync: FsyncMode = Field(FsyncMode.normal, description="off | normal | full, see docs/buffer.md")

    @field_validator("fsync", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false; accept it as the mode the user wrote
        return "off" if v is False else v


ConnectorSection = Annotated[Union[tuple(connector_config_models())], Field(discriminator="type")]  # noqa: UP007
SinkSection = Annotated[Union[tuple(sink_config_models())], Field(discriminator="type")]  # noqa: UP007


class AgentConfig(StrictModel):
    """An axedge configuration file."""

    version: int = Field(1, ge=1, le=1, description="Config format version")
    agent: AgentSection = Field(default_factory=AgentSection)
    core: CoreSection = Field(default_factory=CoreSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    sinks: list[SinkSection] = Field(default_factory=list, description="Where data goes; default: one Parquet raw dataset in agent.data_dir")
    connectors: list[ConnectorSection] = Field(default_factory=list, description="Data sources")
    processors: list[AnomalyProcessorConfig] = Field(default_factory=list, description="Derived data: anomaly models scored at the edge")

    @field_validator("connectors")
    @classmethod
    def _unique_connector_ids(cls, v: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for c in v:
            if c.id in seen:
                raise ValueError(f"connector id {c.id!r} is used twice")
            seen.add(c.id)
        return v

    @model_validator(mode="after")
    def _unique_sink_ids(self) -> AgentConfig:
        ids = [s.id for s in self.sinks]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"sink ids used twice: {sorted(dupes)}")
        return self

    def effective_sinks(self) -> list[Any]:
        if self.sinks:
            return list(self.sinks)
        from edge_agent.sinks.parquet import ParquetSinkConfig

        return [ParquetSinkConfig(id="raw", type="parquet")]
