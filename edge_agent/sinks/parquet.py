"""Raw Parquet dataset sink (placeholder config; implementation lands with the writer)."""
from __future__ import annotations

from typing import Literal
from pathlib import Path

from pydantic import ByteSize, Field

from edge_agent.config.base import ComponentId, StrictModel


class ParquetSinkConfig(StrictModel):
    id: ComponentId = Field("raw", description="Sink id")
    type: Literal["parquet"]
    path: Path | None = Field(None, description="Dataset root; default agent.data_dir")
    max_file_rows: int = Field(5_000_000, ge=1, description="Rotate files at this many rows")
    max_file_bytes: ByteSize = Field(ByteSize(128 * 1024 * 1024), description="Rotate files at about this size")
    max_file_age_secs: float = Field(60.0, gt=0, description="Commit open files at least this often")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression codec")
    compression_level: int | None = Field(None, description="Codec level (zstd 1-22); default the codec's")
