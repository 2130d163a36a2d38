"""The curated layer reads the same in pandas, Polars, DuckDB, pyarrow.dataset and Hugging Face datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from dataset_builder.curate import build
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

A = "acme/plant1/line1/press"
B = "acme/plant1/line2/oven"
DAY = 86_400 * SEC


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    cat = [record(0, A, "temperature"), record(1, A, "pressure", unit="bar"), record(2, B, "temperature")]
    n = 7200
    t = DAY0_NS + DAY - 3600 * SEC + np.arange(n) * SEC  # two UTC days
    write_raw(root / "raw", cat, [samples(np.full(n, i), t, np.arange(n) * (i + 1.0)) for i in range(3)])
    build(root / "raw", root / "cur", period="10s", embargo="0s")
    return root / "cur"


def expected(out):
    return ds.dataset(out / "curated", partitioning="hive").to_table(
        filter=(ds.field("asset") == "acme.plant1.line1.press")).sort_by("time")


def test_pyarrow_dataset_partition_filters_prune_files(out):
    d = ds.dataset(out / "curated", partitioning="hive")
    assert d.schema.field("asset").type == "string" or str(d.schema.field("asset").type) == "string"
    frags = list(d.get_fragments(filter=(ds.field("asset") == "acme.plant1.line1.press")
                                 & (ds.field("date") == "2025-11-24")))
    assert len(frags) == 1 and "date=2025-11-24" in frags[0].path
    t = d.to_table(filter=(ds.field("asset") == "acme.plant1.line1.press") & (ds.field("date") == "2025-11-24"))
    assert t.num_rows == 360 and t["pressure"].to_pylist()[0] == pytest.approx(2 * np.mean(np.arange(3600, 3610)))


def test_pandas(out):
    want = expected(out)
    df = pd.read_parquet(out / "curated/asset=acme.plant1.line1.press")
    df = df.sort_values("time")
    assert len(df) == want.num_rows == 720
    np.testing.assert_allclose(df["temperature"].to_numpy(), want["temperature"].to_numpy())
    assert str(df["time"].dtype).startswith("datetime64[us, UTC]")


def test_polars(out):
    pl = pytest.importorskip("polars")
    want = expected(out)
    df = (pl.scan_parquet(str(out / "curated/**/*.parquet"), hive_partitioning=True)
          .filter(pl.col("asset") == "acme.plant1.line1.press").sort("time").collect())
    assert df.height == want.num_rows
    np.testing.assert_allclose(df["pressure"].to_numpy(), want["pressure"].to_numpy())
    assert df.schema["time"] == pl.Datetime("us", "UTC")


def test_duckdb(out):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    rows = con.execute(
        "SELECT asset, date, count(*), avg(temperature) FROM read_parquet(?, hive_partitioning=true) "
        "GROUP BY ALL ORDER BY ALL", [str(out / "curated/**/*.parquet")]).fetchall()
    assert [(r[0], str(r[1]), r[2]) for r in rows] == [  # DuckDB types the date partition as DATE
        ("acme.plant1.line1.press", "2025-11-23", 360), ("acme.plant1.line1.press", "2025-11-24", 360),
        ("acme.plant1.line2.oven", "2025-11-23", 360), ("acme.plant1.line2.oven", "2025-11-24", 360)]
    assert rows[0][3] == pytest.approx(np.arange(3600).mean())


def test_hugging_face_datasets(out, tmp_path):
    datasets = pytest.importorskip("datasets")
    want = expected(out)
    d = datasets.load_dataset("parquet", data_files={"rows": str(out / "curated/asset=acme.plant1.line1.press/*/*.parquet")},
                              cache_dir=str(tmp_path / "hf"))["rows"]
    assert d.num_rows == want.num_rows
    got = d.to_pandas().sort_values("time")
    np.testing.assert_allclose(got["temperature"].to_numpy(), want["temperature"].to_numpy())
    train = d.filter(lambda r: r["split"] == "train")
    assert 0 < train.num_rows < d.num_rows


def test_hugging_face_loads_the_directory_through_the_card_configs(out, tmp_path):
    datasets = pytest.importorskip("datasets")
    d = datasets.load_dataset(str(out), "acme.plant1.line2.oven", cache_dir=str(tmp_path / "hf"))["rows"]
    assert d.num_rows == 720 and "temperature__state" in d.column_names
