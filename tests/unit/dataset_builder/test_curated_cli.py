"""`axedge dataset ...` argument handling: aggregations, state cycles, splits, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds

from dataset_builder.cli import main
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

A = "acme/plant1/line1/press"


def test_build_options_reach_the_build(tmp_path, capsys):
    cat = [record(0, A, "state", unit=None, dtype="int16"), record(1, A, "load", unit="%")]
    n = 120
    state = np.where((np.arange(n) // 10) % 3 == 2, 2.0, 1.0)  # running (2) every third 10 s
    t = DAY0_NS + np.arange(n) * SEC
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(n), t, state), samples(np.ones(n), t, np.arange(n, dtype=float))])
    rc = main(["build", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--period", "2s",
               "--agg", "load=max", "--cycles", "state:state:2", "--split", "0.5,0.5,0", "--embargo", "0s",
               "--license", "CC0-1.0"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 60 and summary["signals"] == 2
    t = ds.dataset(tmp_path / "out/curated", partitioning="hive").to_table().sort_by("time")
    assert t["load"].to_pylist()[:3] == [1.0, 3.0, 5.0]  # max of each 2 s period
    cyc = ds.dataset(tmp_path / "out/cycles", partitioning="hive").to_table()
    assert cyc["value"].to_pylist() == ["2"] * 4 and set(cyc["rows"].to_pylist()) == {5}
    assert set(t["split"].to_pylist()) == {"train", "validation"}
    meta = json.loads((tmp_path / "out/_axedge/dataset.json").read_text())
    assert meta["license"] == "CC0-1.0" and meta["build"]["aggregations"] == {"load": "max"}


def test_exit_codes(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "signal catalog" in capsys.readouterr().err
    cat = [record(0, A, "x")]
    write_raw(tmp_path / "raw", cat, [samples([0], DAY0_NS, [1.0])])
    assert main(["build", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--period", "7s"]) == 2
    assert "must divide a day" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--agg", "x=median"]) == 2
    assert "unknown aggregation" in capsys.readouterr().err
