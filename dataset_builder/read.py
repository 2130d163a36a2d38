"""Reading an axedge dataset with pyarrow (plain ``pyarrow.dataset`` underneath).

Nothing here is needed to read the data: ``pyarrow.dataset.dataset(root / "raw",
partitioning="hive")``, pandas, Polars, DuckDB and Spark read the raw layer directly. These
helpers only fix the partition column types and add the signal catalog.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dataset_builder.format import CATALOG_PARQUET, META_DIR, RAW_DIR, RAW_FILE_SCHEMA, DatasetError

#: Hive partition columns of the raw layer (both strings: ``asset=site.line.cell``, ``date=2026-11-23``).
RAW_PARTITIONING = ds.partitioning(pa.schema([("asset", pa.string()), ("date", pa.string())]), flavor="hive")


def open_raw(root: str | Path) -> ds.Dataset:
    """The committed raw layer as a ``pyarrow.dataset.Dataset`` (columns of RAW_FILE_SCHEMA plus
    ``asset`` and ``date``). Staged (``_staging``) and quarantined files are outside ``raw/`` and
    names starting with ``_`` or ``.`` are ignored, so only committed files are read."""
    raw = Path(root) / RAW_DIR
    if not raw.is_dir():
        raise DatasetError(f"{raw} does not exist: not an axedge dataset (or nothing committed yet)",
                           path=str(raw), hint="point at the dataset root that holds raw/ and _axedge/")
    schema = RAW_FILE_SCHEMA.append(pa.field("asset", pa.string())).append(pa.field("date", pa.string()))
    return ds.dataset(raw, format="parquet", partitioning=RAW_PARTITIONING, schema=schema,
                      ignore_prefixes=[".", "_"])


def read_catalog(root: str | Path) -> pa.Table:
    """The signal catalog (one row per signal key: name, asset, unit, dtype, address, ...)."""
    path = Path(root) / META_DIR / CATALOG_PARQUET
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise DatasetError(f"signal catalog {path} not found", path=str(path),
                           hint="the catalog is written with the first commit") from exc
