"""The committed raw layer reads with pyarrow, pandas, Polars and DuckDB without axedge; staged
and quarantined files never show up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from dataset_builder.read import open_raw, read_catalog
from dataset_builder.writer import RawDatasetWriter

T0 = 1_763_942_000_000_000_000  # 23:53:20 UTC: rows on two dates
ASSETS = ["acme/plant1/line1/press", "acme/plant1/line2/oven"]

# Runs in a fresh interpreter where importing any axedge package fails.
READER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    class NoAxedge(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("dataset_builder", "edge_agent", "connectors", "models", "hardware"):
                raise ImportError("axedge must not be needed to read: " + name)
    sys.meta_path.insert(0, NoAxedge())
    root = sys.argv[1]
    import duckdb, pandas as pd, polars as pl, pyarrow.dataset as ds
    out = {}
    t = ds.dataset(root + "/raw", partitioning="hive").to_table()
    out["pyarrow"] = [t.num_rows, float(sum(t["value"].to_pylist())), sorted(set(t["asset"].to_pylist())),
                      str(t.schema.field("time").type)]
    df = pd.read_parquet(root + "/raw")
    out["pandas"] = [len(df), float(df["value"].sum()), sorted(df["asset"].astype(str).unique()), str(df["time"].dtype)]
    lf = pl.scan_parquet(root + "/raw/**/*.parquet", hive_partitioning=True)
    p = lf.select(pl.len(), pl.col("value").sum(), pl.col("asset").unique().sort().implode()).collect().row(0)
    out["polars"] = [p[0], p[1], list(p[2]), str(lf.collect_schema()["time"])]
    q = f"read_parquet('{root}/raw/**/*.parquet', hive_partitioning=true)"
    n, s = duckdb.sql(f"select count(*), sum(value) from {q}").fetchall()[0]
    assets = [r[0] for r in duckdb.sql(f"select distinct asset from {q} order by 1").fetchall()]
    typ = duckdb.sql(f"select typeof(time) from {q} limit 1").fetchall()[0][0]
    out["duckdb"] = [n, s, assets, typ]
    out["signals"] = sorted(set(duckdb.sql(f"select signal from {q}").fetchnumpy()["signal"].tolist()))
    print(json.dumps(out))
    """
)


def _write(tmp_path, recs, mk):
    cat = recs(6, ASSETS)
    root = tmp_path / "ds"
    w = RawDatasetWriter(root, row_group_rows=10)
    w.open()
    w.set_catalog(cat)
    for seq in range(3):  # committed: values 1.0 each, 3 x 40 rows
        w.write("b", seq, mk(np.arange(40) % 6, T0 + np.arange(40) * 30 * 10**9, np.ones(40)))
        w.commit()
    w.write("b", 3, mk(np.arange(40) % 6, T0, np.full(40, 1000.0)))  # staged, never committed
    del w  # crash
    w = RawDatasetWriter(root, row_group_rows=10)
    w.open()  # quarantines the staged files of the crashed run
    w.set_catalog(cat)
    w.write("b", 3, mk(np.arange(40) % 6, T0, np.full(40, 1000.0)))  # staged now, uncommitted
    (root / "_staging" / "garbage.parquet.tmp").write_bytes(b"PAR1 not parquet")
    assert list((root / "_quarantine").iterdir()) and len(list((root / "_staging").iterdir())) >= 2
    return root, cat


def test_committed_raw_layer_reads_without_axedge_in_four_engines(tmp_path, recs, mk):
    root, cat = _write(tmp_path, recs, mk)
    res = subprocess.run([sys.executable, "-c", READER, str(root)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assets = ["acme.plant1.line1.press", "acme.plant1.line2.oven"]
    for engine in ("pyarrow", "pandas", "polars", "duckdb"):
        n, total, seen_assets, _ = out[engine]
        assert (n, total, seen_assets) == (120, 120.0, assets), engine
    assert out["pyarrow"][3] == "timestamp[us, tz=UTC]"
    assert out["pandas"][3] == "datetime64[us, UTC]"
    assert out["polars"][3] == "Datetime(time_unit='us', time_zone='UTC')"
    assert out["duckdb"][3] == "TIMESTAMP WITH TIME ZONE"
    assert out["signals"] == sorted(r["key"] for r in cat)


def test_open_raw_and_read_catalog(tmp_path, recs, mk):
    root, cat = _write(tmp_path, recs, mk)
    d = open_raw(root)
    t = d.to_table(filter=ds.field("asset") == "acme.plant1.line1.press")
    assert t.num_rows == 60 and set(t["date"].to_pylist()) == {"2025-11-23", "2025-11-24"}
    assert d.schema.field("asset").type == pa.string()
    c = read_catalog(root)
    assert sorted(c["key"].to_pylist()) == sorted(r["key"] for r in cat)
    assert set(c["unit"].to_pylist()) == {"degC"} and "id" not in c.column_names
