"""bench/core_throughput.py still runs and reports what docs/performance.md quotes (a small run:
the figures themselves are measured by hand, never asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_bench_commits_every_row_and_reports_rss_parts():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "core_throughput.py"), "--rows", "20000",
                        "--signals", "200", "--assets", "2", "--batch-rows", "5000"],
                       capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["bare_write_table"]["rows"] == 20000
    for kind in ("agent_sqlite", "agent_memory"):
        run = out[kind]
        assert "error" not in run, run
        assert run["rows"] == 20000 and run["dropped"] == 0
        assert run["peak_rss_mb"] > 0 and run["peak_anon_rss_mb"] > 0 and run["peak_file_rss_mb"] > 0
        assert run["ratio_to_bare"] > 0
    assert set(out["targets"]) == {"durable_ratio_ge_0.5", "memory_ratio_ge_0.8", "durable_peak_rss_lt_250mb"}
