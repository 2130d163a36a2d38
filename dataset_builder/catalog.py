"""The signal catalog stored next to the data: ``_axedge/signals.parquet`` and ``signals.json``.

Rows are keyed by the signal *key* (``<asset path>/<name>``), which is what the data files
carry. The agent's integer ids are local to one run and are not stored. The catalog is the
union over all runs that wrote the dataset: a signal that disappears from the config keeps its
row, so every key in the data has its metadata; a changed signal takes the newest metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_builder.format import CATALOG_JSON, CATALOG_PARQUET, FORMAT_VERSION, META_DIR, DatasetError, arrow_strings
from dataset_builder.manifest import fsync_dir

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field("asset_partition", pa.string(), nullable=False),
        pa.field("unit", pa.string()),
        pa.field("dtype", pa.string()),
        pa.field("address", pa.string()),
        pa.field("connector", pa.string()),
        pa.field("semantic_id", pa.string()),
        pa.field("description", pa.string()),
        pa.field("extra", pa.string()),  # JSON object
    ],
    metadata={b"axedge.catalog": str(FORMAT_VERSION).encode()},
)
COLUMNS = CATALOG_SCHEMA.names


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    """A stored catalog row from an agent record (drops the run-local ``id``)."""
    row: dict[str, Any] = {c: record.get(c) for c in COLUMNS}
    row["extra"] = dict(record.get("extra") or {})
    for c in ("name", "asset", "asset_partition"):
        row[c] = str(row[c] or "")
    return row


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union by key, ``new`` wins; sorted by key."""
    by_key = {r["key"]: r for r in old}
    by_key.update({r["key"]: r for r in new})
    return [by_key[k] for k in sorted(by_key)]


def load(root: Path) -> list[dict[str, Any]]:
    """The stored catalog rows (``[]`` for a new dataset)."""
    path = root / META_DIR / CATALOG_JSON
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read signal catalog {path}: {exc}", path=str(path),
                           hint="restore it, or delete it and let the agent rewrite it at the next commit") from exc
    return [normalize(r) for r in doc.get("signals", [])]


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    cols["extra"] = [json.dumps(r.get("extra") or {}, sort_keys=True, default=str) for r in rows]
    return pa.Table.from_arrays([arrow_strings(cols[c]) for c in COLUMNS], schema=CATALOG_SCHEMA)


def save(root: Path, rows: list[dict[str, Any]], updated: str) -> None:
    """Write ``signals.parquet`` and ``signals.json`` atomically (tmp, fsync, replace, dir fsync)."""
    meta = root / META_DIR
    tmp_json = meta / f".{CATALOG_JSON}.tmp"
    tmp_parquet = meta / f".{CATALOG_PARQUET}.tmp"
    # one signal per line: readable and diffable, and fast (the C encoder runs without indent)
    head = json.dumps({"format_version": FORMAT_VERSION, "updated": updated})[:-1]
    body = ",\n".join(json.dumps(r, sort_keys=True, default=str) for r in rows)
    with open(tmp_json, "w") as f:
        f.write(f'{head}, "signals": [\n{body}\n]}}\n')
        f.flush()
        os.fsync(f.fileno())
    pq.write_table(to_table(rows), tmp_parquet, compression="zstd")
    fd = os.open(tmp_parquet, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_parquet, meta / CATALOG_PARQUET)
    os.replace(tmp_json, meta / CATALOG_JSON)
    fsync_dir(meta)
