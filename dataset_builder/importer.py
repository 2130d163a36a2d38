"""``import-csv``: existing CSV logs (machine exports, historian dumps, public datasets) into the
raw layer, with units and asset paths from a small mapping file.

Wide files (one column per signal, one row per time) are read in blocks (pyarrow's streaming
CSV reader; pandas for whitespace-separated files) and turned into long SAMPLE_SCHEMA batches
with numpy, then written by :class:`~dataset_builder.writer.RawDatasetWriter`, so the result is
an ordinary raw dataset (manifest, catalog, checksums) that ``build`` reads like agent data.
Empty cells are not samples: they are skipped and counted. Re-importing the same file is a
no-op: its buffer id is the file's SHA-256, and committed batches are replays.

Mapping file (YAML; examples in ``examples/mappings/``)::

    asset: acme/plant1/line1/oven        # may use {stem}: the file name without extension
    format: csv                          # csv | whitespace
    header: true                         # false: give `columns`
    time:
      column: timestamp                  # or no column: start + row number * period
      format: "%Y-%m-%d %H:%M:%S"        # strptime format, iso, epoch_s or epoch_ms
      timezone: UTC                      # of naive times
    signals:                             # column -> signal; other columns are skipped
      value: {name: temperature, unit: degF}
    include_unmapped: false              # true: import every other column under its own name
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dataset_builder.format import SAMPLE_SCHEMA, TS_NS_UTC, DatasetError, asset_partition_value
from dataset_builder.labels import parse_time_us

log = logging.getLogger("axedge.dataset.import")

BLOCK_BYTES = 16 << 20
COMMIT_ROWS = 5_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalMap(_Strict):
    name: str = Field(description="Signal name within the asset")
    unit: str | None = Field(None, description="Unit (UCUM code or a common spelling: degC, bar, rpm)")
    dtype: Literal["float64", "int64", "bool", "string"] | None = Field(None, description="Default: inferred")
    asset: str | None = Field(None, description="Asset path of this signal; default the file's asset")
    description: str | None = None
    semantic_id: str | None = Field(None, description="e.g. an ECLASS IRDI or OPC UA type")


class TimeMap(_Strict):
    column: str | None = Field(None, description="Time column; none: start + row * period")
    format: str = Field("iso", description="iso, epoch_s, epoch_ms, or a strptime format")
    timezone: str = Field("UTC", description="Time zone of naive times (IANA name)")
    start: str | None = Field(None, description="First row's time when there is no time column")
    period: str | None = Field(None, description="Row spacing when there is no time column (e.g. 100ms)")

    @model_validator(mode="after")
    def _need_time(self) -> TimeMap:
        if self.column is None and (self.start is None or self.period is None):
            raise ValueError("give time.column, or time.start and time.period")
        return self


class Mapping(_Strict):
    asset: str = Field(description="Asset path (site/area/line/asset); {stem} is the file name")
    format: Literal["csv", "whitespace"] = "csv"
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = True
    columns: list[str] | None = Field(None, description="Column names when header is false")
    skip: list[str] = Field(default_factory=list, description="Columns to ignore")
    time: TimeMap
    signals: dict[str, SignalMap] = Field(default_factory=dict)
    include_unmapped: bool = False
    description: str | None = None
    license: str | None = None
    source: str | None = Field(None, description="Where the data came from (recorded as provenance)")

    @model_validator(mode="after")
    def _need_columns(self) -> Mapping:
        if not self.header and not self.columns:
            raise ValueError("header: false needs `columns`")
        return self


def load_mapping(path: str | Path) -> Mapping:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
        return Mapping.model_validate(doc)
    except OSError as exc:
        raise DatasetError(f"cannot read mapping {p}: {exc.strerror}", path=str(p)) from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise DatasetError(f"{p}: invalid mapping: {exc}", path=str(p),
                           hint="see examples/mappings/ and docs/dataset-builder.md") from exc


@dataclass
class ImportResult:
    rows: int = 0  # samples written
    empty_cells: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    signals: int = 0


@dataclass
class _Sig:
    id: int
    column: str
    text: bool


def import_csv(files: list[str | Path], mapping: Mapping | str | Path, out: str | Path) -> ImportResult:
    """Import CSV ``files`` into the raw dataset at ``out`` (created or appended to)."""
    from dataset_builder.metadata import axedge_version
    from dataset_builder.writer import RawDatasetWriter

    m = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    mapping_hash = hashlib.sha256(json.dumps(m.model_dump(), sort_keys=True).encode()).hexdigest()[:16]
    prov = {"gateway": "import-csv", "axedge_version": axedge_version(), "config_hash": mapping_hash}
    if m.source:
        prov["source"] = m.source
    paths = [Path(f) for f in files]
    plans: list[tuple[Path, list[str], list[_Sig]]] = []
    records: dict[str, dict[str, Any]] = {}
    for p in paths:
        names = _columns(p, m)
        sigs = []
        for col in names:
            if col == m.time.column or col in m.skip or (col not in m.signals and not m.include_unmapped):
                continue
            sm = m.signals.get(col) or SignalMap(name=col.strip() or "column")
            asset = (sm.asset or m.asset).format(stem=p.stem).strip("/")
            key = f"{asset}/{sm.name}"
            rec = records.get(key)
            if rec is None:
                rec = records[key] = dict(id=len(records), key=key, name=sm.name, asset=asset,
                                          asset_partition=asset_partition_value(asset), unit=sm.unit, dtype=sm.dtype,
                                          address=f"csv:{col}", connector="import-csv", semantic_id=sm.semantic_id,
                                          description=sm.description, extra={})
            sigs.append(_Sig(rec["id"], col, sm.dtype == "string"))
        missing = [c for c in m.signals if c not in names]
        if missing:
            raise DatasetError(f"{p}: mapped columns {missing} not in the file (columns: {names[:20]})", path=str(p))
        if m.time.column is not None and m.time.column not in names:
            raise DatasetError(f"{p}: time column {m.time.column!r} not in the file", path=str(p))
        plans.append((p, names, sigs))

    result = ImportResult(signals=len(records))
    w = RawDatasetWriter(Path(out), provenance=prov)
    w.open()
    try:
        w.set_catalog(list(records.values()))
        for p, names, sigs in plans:
            buffer_id = "import:" + _sha256(p)[:24]
            seq, rows, pending, offset = 0, 0, 0, 0
            for block in _blocks(p, m, names):
                t_ns = _times(block, m, offset, p)
                offset += block.num_rows
                batch, empty = _long(block, sigs, t_ns, records)
                result.empty_cells += empty
                w.write(buffer_id, seq, batch)
                seq += 1
                rows += batch.num_rows
                pending += batch.num_rows
                if pending >= COMMIT_ROWS:
                    w.set_catalog(list(records.values()))  # dtypes inferred so far
                    w.commit()
                    pending = 0
            w.set_catalog(list(records.values()))
            w.commit()
            result.rows += rows
            result.files.append({"file": p.name, "rows": offset, "samples": rows})
            log.info("event=imported file=%s rows=%d samples=%d", p, offset, rows)
    except BaseException:
        w.abort()
        raise
    finally:
        w.close()
    return result


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _columns(p: Path, m: Mapping) -> list[str]:
    if not m.header:
        return list(m.columns or [])
    try:
        with open(p, newline="") as f:
            first = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise DatasetError(f"cannot read {p}: {exc.strerror}", path=str(p)) from exc
    if m.format == "whitespace":
        return first.split()
    import csv

    return next(csv.reader([first], delimiter=m.delimiter))


def _blocks(p: Path, m: Mapping, names: list[str]):
    """The file as pyarrow tables of a few MB each (text times as strings, parsed by :func:`_times`)."""
    types = {m.time.column: pa.string()} if m.time.column and not m.time.format.startswith("epoch_") else {}
    arrow = {"float64": pa.float64(), "int64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    types.update({c: arrow[sm.dtype] for c, sm in m.signals.items() if sm.dtype})
    try:
        if m.format == "whitespace":
            import pandas as pd

            for df in pd.read_csv(p, sep=r"\s+", header=0 if m.header else None, names=None if m.header else names,
                                  chunksize=200_000, dtype={k: "string" if v == pa.string() else None
                                                            for k, v in types.items()} or None):
                yield pa.Table.from_pandas(df, preserve_index=False)
            return
        from pyarrow import csv as pacsv

        reader = pacsv.open_csv(
            p,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=None if m.header else names),
            parse_options=pacsv.ParseOptions(delimiter=m.delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        for b in reader:
            yield pa.Table.from_batches([b])
    except (pa.ArrowInvalid, ValueError) as exc:
        raise DatasetError(f"{p}: cannot parse: {exc}", path=str(p),
                           hint="check delimiter/header, or set the column's dtype (e.g. string) in the mapping") from exc


def _times(block: pa.Table, m: Mapping, offset: int, p: Path) -> np.ndarray:
    """Source times of the block's rows (ns UTC)."""
    from dataset_builder.curate import parse_duration_us

    tm = m.time
    n = block.num_rows
    if tm.column is None:
        start = parse_time_us(tm.start) * 1000
        return start + (offset + np.arange(n, dtype=np.int64)) * parse_duration_us(tm.period) * 1000
    col = block.column(tm.column)
    try:
        if tm.format in ("epoch_s", "epoch_ms"):
            x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            return np.round(x * (1e9 if tm.format == "epoch_s" else 1e6)).astype(np.int64)
        text = pc.cast(col, pa.string())
        if tm.format == "iso":
            try:
                ts = pc.cast(text, pa.timestamp("ns"))
            except pa.ArrowInvalid:  # with a zone offset or Z
                ts = pc.cast(text, pa.timestamp("ns", "UTC"))
        else:
            ts = pc.strptime(text, format=tm.format, unit="ns")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DatasetError(f"{p}: time column {tm.column!r} does not match format {tm.format!r}: {exc}",
                           path=str(p), hint="set time.format (iso, epoch_s, epoch_ms or a strptime format)") from exc
    if ts.null_count:
        raise DatasetError(f"{p}: {ts.null_count} rows without a time in column {tm.column!r}", path=str(p))
    if ts.type.tz is None and tm.timezone not in ("UTC", "Z", "Etc/UTC"):
        import pandas as pd

        local = pd.to_datetime(ts.to_numpy(zero_copy_only=False)).tz_localize(tm.timezone, ambiguous="NaT",
                                                                              nonexistent="NaT")
        if local.isna().any():
            raise DatasetError(f"{p}: {int(local.isna().sum())} local times are ambiguous or skipped (DST) in "
                               f"{tm.timezone}", path=str(p), hint="export the log in UTC")
        return local.tz_convert("UTC").asi8
    return pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)


def _long(block: pa.Table, sigs: list[_Sig], t_ns: np.ndarray, records: dict[str, dict]) -> tuple[pa.RecordBatch, int]:
    """Wide block -> one long SAMPLE_SCHEMA batch (non-empty cells only); returns (batch, empty cells)."""
    by_id = {r["id"]: r for r in records.values()}
    ids, times, vals, texts = [], [], [], []
    empty = 0
    for s in sigs:
        col = block.column(s.column).combine_chunks()
        rec = by_id[s.id]
        is_text = s.text or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                                 or pa.types.is_boolean(col.type) or pa.types.is_null(col.type))
        if rec["dtype"] is None and not pa.types.is_null(col.type):
            rec["dtype"] = "string" if is_text else "int64" if pa.types.is_integer(col.type) else \
                "bool" if pa.types.is_boolean(col.type) else "float64"
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        empty += int(valid.shape[0] - np.count_nonzero(valid))
        idx = np.flatnonzero(valid)
        if idx.shape[0] == 0:
            continue
        ids.append(np.full(idx.shape[0], s.id, np.int32))
        times.append(t_ns[idx])
        sel = col.filter(pa.array(valid))
        if is_text:
            vals.append(np.full(idx.shape[0], np.nan))
            texts.append(pc.cast(sel, pa.string()))
        else:
            vals.append(pc.cast(sel, pa.float64()).to_numpy(zero_copy_only=False))
            texts.append(pa.nulls(idx.shape[0], pa.string()))
    if not ids:
        return pa.RecordBatch.from_pylist([], schema=SAMPLE_SCHEMA), empty
    t = np.concatenate(times)
    v = np.concatenate(vals)
    n = t.shape[0]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(np.concatenate(ids), pa.int32()),
            pa.array(t, pa.int64()).cast(TS_NS_UTC),
            pa.nulls(n, TS_NS_UTC),
            pa.array(t, pa.int64()).cast(TS_NS_UTC),  # imported: received when measured
            pa.array(v, pa.float64(), mask=np.isnan(v)),
            pa.concat_arrays(texts),
            pa.array(np.zeros(n, np.uint32), pa.uint32()),
        ],
        schema=SAMPLE_SCHEMA,
    )
    return batch, empty
