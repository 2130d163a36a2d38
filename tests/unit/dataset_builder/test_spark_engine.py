"""The Spark engine (mapInArrow on local[2]) writes exactly what the local process pool writes."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

from dataset_builder.curate import build
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

# starting the JVM alone takes 10-60 s on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this virtualenv's Python

    session = (SparkSession.builder.master("local[2]").appName("axedge-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
               .getOrCreate())
    yield session
    session.stop()


def test_spark_and_local_engines_give_identical_files(tmp_path, spark):
    assets = ["acme/p1/l1/press", "acme/p1/l2/oven", "acme/p2/l1/robot"]
    cat = [record(i, a, n) for i, (a, n) in enumerate((a, n) for a in assets for n in ("temp", "count"))]
    rng = np.random.default_rng(11)
    n = 3000
    batches = []
    for i in range(len(cat)):
        t = DAY0_NS + 86_400 * SEC - 1500 * SEC + np.sort(rng.integers(0, 3000, n)) * SEC  # two days
        v = np.cumsum(rng.normal(size=n)) if i % 2 == 0 else (np.arange(n) // 40).astype(float)
        batches.append(samples(np.full(n, i), t, v))
    write_raw(tmp_path / "raw", cat, batches)
    kw = dict(period="2s", cycles={"signal": "count"}, embargo="10s", fill_limit="6s")
    local = build(tmp_path / "raw", tmp_path / "local", engine="local", workers=2, **kw)
    sparked = build(tmp_path / "raw", tmp_path / "spark", engine="spark", **kw)
    assert len(local.partitions) == len(sparked.partitions) == 6
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.parquet"))
    assert files == sorted(p.relative_to(tmp_path / "spark") for p in (tmp_path / "spark").rglob("*.parquet"))
    assert len(files) == 12  # curated and cycles for each (asset, day)
    for rel in files:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "spark" / rel).read_bytes(), rel
    a = json.loads((tmp_path / "local/_axedge/dataset.json").read_text())
    b = json.loads((tmp_path / "spark/_axedge/dataset.json").read_text())
    for k in ("signals", "assets", "issues", "files", "time_range", "rows"):
        assert a[k] == b[k], k
    assert b["build"]["engine"] == "spark"
