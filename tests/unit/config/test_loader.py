import pytest

from edge_agent.config import load_config, load_config_text
from edge_agent.errors import ConfigError

GOOD = """\
agent:
  id: gw1
connectors:
  - id: synth
    type: synthetic
    asset: plant1/casting/line1/pourer
    rate_hz: 5
    signals:
      - name: melt_temperature
        unit: Cel
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config_text(text, fname="plant.yaml")
    return ei.value.problems


def test_good_config_loads():
    cfg = load_config_text(GOOD, fname="plant.yaml")
    assert cfg.agent.id == "gw1"
    assert cfg.connectors[0].signals[0].unit == "Cel"
    assert cfg.effective_sinks()[0].type == "parquet"


def test_error_names_file_line_and_key_path():
    bad = GOOD.replace("rate_hz: 5", "rate_hz: 0")
    assert problems(bad) == ["plant.yaml:7 connectors[0].rate_hz: Input should be greater than 0"]


def test_unknown_key_is_rejected_with_line():
    bad = GOOD.replace("    rate_hz: 5\n", "    rate_hz: 5\n    rate_hertz: 5\n")
    (p,) = problems(bad)
    assert p.startswith("plant.yaml:8 connectors[0].rate_hertz: unknown key")


def test_nested_list_error_line():
    bad = GOOD + "      - name: bad name!\n"
    (p,) = problems(bad)
    assert p.startswith("plant.yaml:11 connectors[0].signals[1].name:")


def test_unknown_connector_type_is_named():
    bad = GOOD.replace("type: synthetic", "type: profinet")
    (p,) = problems(bad)
    assert p.startswith("plant.yaml:4 connectors[0]")
    assert "profinet" in p or "tag" in p


def test_duplicate_keys_are_errors():
    bad = GOOD.replace("  id: gw1\n", "  id: gw1\n  id: gw2\n")
    (p,) = problems(bad)
    assert p == "plant.yaml:3 agent.id: duplicate key"


def test_yaml_syntax_error_has_line():
    (p,) = problems("agent:\n  id: [unclosed\n")
    assert p.startswith("plant.yaml:")


def test_duplicate_connector_ids():
    bad = GOOD + GOOD.split("connectors:\n")[1]
    (p,) = problems(bad)
    assert "used twice" in p


def test_env_secret_is_substituted_and_never_echoed(monkeypatch):
    monkeypatch.setenv("AXEDGE_TEST_GW", "gw-from-env")
    cfg = load_config_text(GOOD.replace("id: gw1", "id: ${env:AXEDGE_TEST_GW}"))
    assert cfg.agent.id == "gw-from-env"
    monkeypatch.setenv("AXEDGE_TEST_SECRET", "s3cr3t value")
    with pytest.raises(ConfigError) as ei:
        load_config_text(GOOD.replace("id: gw1", "id: ${env:AXEDGE_TEST_SECRET}"), fname="plant.yaml")
    assert "s3cr3t" not in str(ei.value)
    assert ei.value.problems[0].startswith("plant.yaml:2 agent.id:")


def test_missing_env_secret(monkeypatch):
    monkeypatch.delenv("AXEDGE_NOPE", raising=False)
    (p,) = problems(GOOD.replace("id: gw1", "id: ${env:AXEDGE_NOPE}"))
    assert p == "plant.yaml:2 agent.id: environment variable AXEDGE_NOPE is not set"


def test_file_secret(tmp_path):
    (tmp_path / "gw.txt").write_text("gw-file\n")
    cfgfile = tmp_path / "plant.yaml"
    cfgfile.write_text(GOOD.replace("id: gw1", "id: ${file:gw.txt}"))
    assert load_config(cfgfile).agent.id == "gw-file"


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.yaml")
    assert "not found" in str(ei.value)


def test_bytes_accept_units():
    cfg = load_config_text(GOOD + "buffer:\n  max_bytes: 256MiB\n")
    assert int(cfg.buffer.max_bytes) == 256 * 1024 * 1024
