"""HTML report: self-contained (no script, no external resource), well-formed SVG, shows the data."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np

from dataset_builder.cli import main
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

A = "acme/plant1/line1/press"


def test_report_is_offline_and_plots_signals_gaps_cycles_events(tmp_path):
    cat = [record(0, A, "temperature"), record(1, A, "strokes", unit="count", dtype="int64")]
    secs = np.r_[0:300, 400:600]  # a 100 s outage
    t = DAY0_NS + secs * SEC
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(len(t)), t, 20 + secs / 10),
                                      samples(np.ones(len(t)), t, (secs // 30).astype(float))])
    ev = tmp_path / "ev.jsonl"
    ev.write_text(json.dumps({"start": (DAY0_NS // SEC) + 100, "end": (DAY0_NS // SEC) + 130, "kind": "overload"}) + "\n")
    assert main(["build", str(tmp_path / "raw"), "--out", str(tmp_path / "cur"), "--period", "1s",
                 "--cycles", "strokes:counter", "--events", str(ev), "--embargo", "0s"]) == 0
    assert main(["report", str(tmp_path / "cur"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) >= 6
    for s in svgs:
        ET.fromstring(s)  # well-formed
    assert "temperature" in page and "strokes" in page and "overload" in page
    assert "#d64545" in page  # the outage shows in the gap strip
    assert "Cycle durations" in page and page.count("<circle") >= 15
    # the series plot's y labels are the observed extremes
    assert "20" in page and "79.9" in page


def test_report_of_a_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "build the curated dataset first" in capsys.readouterr().err
