"""hardware/gateway_profiles.yaml is complete, and bench/gateway.py judges budgets correctly."""

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gateway", ROOT / "bench" / "gateway.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def profiles() -> dict:
    return yaml.safe_load((ROOT / "hardware" / "gateway_profiles.yaml").read_text())["profiles"]


def test_profiles_cover_the_gateway_classes_with_full_budgets():
    p = profiles()
    assert {"raspberry-pi-4", "raspberry-pi-5", "iot2050-advanced", "industrial-pc"} <= set(p)
    for name, prof in p.items():
        assert prof["arch"] in ("arm64", "amd64"), name
        assert prof["cores"] >= 1 and prof["ram_mib"] >= 512 and prof["disk_gib"] >= 8, name
        assert 0 < prof["cpu_speed_factor"] <= 1.5, name
        b = prof["budget"]
        assert 0 < b["cpu_pct_of_one_core"] <= 100 and 0 < b["rss_mib"] < prof["ram_mib"], name
        # the disk budget must fit the retention the profile promises, with 20 % left over
        assert b["disk_gib_per_day"] * b["retention_days"] <= 0.8 * prof["disk_gib"], name


def test_compare_scales_cpu_and_flags_each_budget():
    bench = load_bench()
    prof = {"tiny": {"arch": "arm64", "ram_mib": 1024, "disk_gib": 16, "cpu_speed_factor": 0.25,
                     "budget": {"cpu_pct_of_one_core": 50, "rss_mib": 200, "disk_gib_per_day": 0.5, "retention_days": 14}}}
    ok = bench.compare({"cpu_pct_of_one_core": 10.0, "rss_mib_peak": 150.0, "disk_gib_per_day": 0.4}, prof)["tiny"]
    assert ok["ok"] and ok["checks"]["cpu_pct_of_one_core_estimated"]["value"] == 40.0
    assert ok["days_until_disk_80pct"] == 32.0 and ok["rss_pct_of_ram"] == 14.6
    bad = bench.compare({"cpu_pct_of_one_core": 13.0, "rss_mib_peak": 250.0, "disk_gib_per_day": 0.6}, prof)["tiny"]
    assert not bad["ok"]
    assert [k for k, c in bad["checks"].items() if not c["ok"]] == ["cpu_pct_of_one_core_estimated", "rss_mib_peak", "disk_gib_per_day"]
