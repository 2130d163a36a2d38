"""``axedge model train|score|eval`` on real files: NAB machine temperature (CSV, labelled
windows) and an axedge-style long Parquet layout."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.cli import main

from .conftest import DATA

NAB = DATA / "nab" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"


@pytest.fixture(scope="module")
def nab_csv(tmp_path_factory):
    if not NAB.exists():
        pytest.skip(f"shared data not found: {NAB}")
    df = pd.read_csv(NAB).rename(columns={"timestamp": "time", "value": "temperature"})
    wins = json.loads((DATA / "nab" / "labels" / "combined_windows.json").read_text())
    label = np.zeros(len(df), int)
    for a, b in wins["realKnownCause/machine_temperature_system_failure.csv"]:
        label[(df["time"] >= a[:19]) & (df["time"] <= b[:19])] = 1
    d = tmp_path_factory.mktemp("nab")
    df.iloc[:2000].to_csv(d / "train.csv", index=False)
    df.assign(label=label).iloc[:6000].to_csv(d / "test.csv", index=False)
    return d


def test_train_score_eval_from_csv(nab_csv, tmp_path, capsys):
    assert main(["train", str(nab_csv / "train.csv"), "--out", str(tmp_path / "m"), "--kind", "zscore", "--window", "12"]) == 0
    assert "trained zscore on 1 signals" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["sampling_period_ns"] == 300 * 10**9 and meta["inputs"][0]["name"] == "temperature"

    assert main(["score", str(tmp_path / "m"), str(nab_csv / "test.csv"), "--out", str(tmp_path / "s.parquet")]) == 0
    scored = pq.read_table(tmp_path / "s.parquet")
    assert scored.num_rows == 6000 and scored.column_names == ["time", "score", "anomaly"]

    assert main(["eval", str(tmp_path / "m"), str(nab_csv / "test.csv"), "--label-column", "label", "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows"] == 6000 and report["events"]["events"] == 2  # the first two labelled windows
    pw = report["pointwise"]
    assert pw["tp"] + pw["fn"] == int(pd.read_csv(nab_csv / "test.csv")["label"].sum())
    assert 0 <= pw["false_alarm_rate"] < 0.2


def test_long_parquet_dataset_dir_is_pivoted(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    t = np.arange(n) * 1_000_000  # 1 s in us
    a = rng.normal(20, 1, n)
    rows = {
        "time": pa.array(np.concatenate([t, t]), pa.timestamp("us", tz="UTC")),
        "signal": pa.array(["line/a"] * n + ["line/b"] * n).dictionary_encode(),
        "value": np.concatenate([a, 2 * a + rng.normal(0, 0.1, n)]),
        "quality": pa.array(np.zeros(2 * n, np.uint32)),
    }
    part = tmp_path / "raw" / "asset=line" / "date=2024-01-01"
    part.mkdir(parents=True)
    pq.write_table(pa.table(rows), part / "part-0.parquet")
    assert main(["train", str(tmp_path / "raw"), "--out", str(tmp_path / "m"), "--kind", "pca", "--window", "1"]) == 0
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["line/a", "line/b"]
    assert meta["sampling_period_ns"] == 10**9


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope"), str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "cannot read bundle" in capsys.readouterr().err


def test_module_runs_as_a_process(nab_csv, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "models.cli", "train", str(nab_csv / "train.csv"), "--out", str(tmp_path / "m"), "--kind", "pca", "--window", "6"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "model.onnx").stat().st_size > 0
