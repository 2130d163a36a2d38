import pytest

from edge_agent.signals import DataType, DuplicateSignal, SignalCatalog, SignalSpec, load_catalog, save_catalog


def test_ids_dense_and_stable():
    c = SignalCatalog()
    a = c.register(SignalSpec("t", "p/a/l", connector="x"))
    b = c.register(SignalSpec("p", "p/a/l", connector="x"))
    assert (a, b) == (0, 1)
    assert c.register(SignalSpec("t", "p/a/l", connector="x")) == 0
    v = c.version
    assert c.register(SignalSpec("t", "p/a/l", unit="Cel", connector="x")) == 0  # refined by same connector
    assert c.get(0).spec.unit == "Cel" and c.version == v + 1


def test_same_key_from_other_connector_is_rejected():
    c = SignalCatalog()
    c.register(SignalSpec("t", "p/a/l", connector="x"))
    with pytest.raises(DuplicateSignal, match="already declared by connector 'x'"):
        c.register(SignalSpec("t", "p/a/l", unit="K", connector="y"))


def test_records_carry_partition():
    c = SignalCatalog()
    c.register(SignalSpec("t", "plant 1/cast/line#1", connector="x"))
    (r,) = c.to_records()
    assert r["key"] == "plant 1/cast/line#1/t"
    assert r["asset_partition"] == "plant_1.cast.line_1"


async def test_synthetic_replay_advances_time_and_counters():
    import numpy as np

    from connectors.base import ConnectorContext
    from connectors.synthetic.config import SyntheticConfig
    from connectors.synthetic.connector import SyntheticConnector

    got = []

    async def send(chunk):
        got.append(chunk)
        return True

    cfg = SyntheticConfig(id="s", type="synthetic", rate_hz=10, chunk_secs=0.5, replay=True, max_speed=True,
                          signals=[{"name": "c", "waveform": "counter"}, {"name": "w", "waveform": "sine"}])
    conn = SyntheticConnector(cfg, ConnectorContext("s", SignalCatalog(), send))
    await conn.connect()
    a = conn._replayed(5, 0)
    b = conn._replayed(5, 0)
    assert np.array_equal(a.value[0::2] + 5, b.value[0::2])  # counter keeps counting
    assert np.array_equal(a.value[1::2], b.value[1::2])  # other waveforms replay the block
    assert (b.source_time_ns - a.source_time_ns == 500_000_000).all()


def _two() -> SignalCatalog:
    cat = SignalCatalog()
    cat.register(SignalSpec(name="t", asset="p/l/a", unit="degC", connector="c1", extra={"topic": "x/t"}))
    cat.register(SignalSpec(name="v", asset="p/l/b", dtype=DataType.string, connector="c2"))
    return cat


def test_saved_catalog_gives_keys_their_old_ids(tmp_path):
    save_catalog(tmp_path / "signals.json", _two())
    cat = SignalCatalog()
    assert cat.preload(load_catalog(tmp_path / "signals.json")) == 2
    assert cat.to_records() == _two().to_records()
    # registered again in the other order: same ids; new keys come after
    assert cat.register(SignalSpec(name="v", asset="p/l/b", dtype=DataType.string, connector="c2")) == 1
    assert cat.register(SignalSpec(name="t", asset="p/l/a", unit="degC", connector="c1", extra={"topic": "x/t"})) == 0
    assert cat.register(SignalSpec(name="new", asset="p/l/a", connector="c1")) == 2


def test_preloaded_signal_is_taken_over_once_then_owned(tmp_path):
    cat = SignalCatalog()
    cat.preload(_two().to_records())
    v0 = cat.version
    # the config moved the signal to another connector: the provisional entry is taken over
    assert cat.register(SignalSpec(name="t", asset="p/l/a", unit="K", connector="c9")) == 0
    assert cat.get(0).spec.unit == "K" and cat.version == v0 + 1
    with pytest.raises(DuplicateSignal):
        cat.register(SignalSpec(name="t", asset="p/l/a", connector="c1"))


def test_preload_refuses_damaged_records():
    recs = _two().to_records()
    with pytest.raises(ValueError, match="dense"):
        SignalCatalog().preload(recs[1:])
    bad = [dict(recs[0], key="p/l/a/other"), recs[1]]
    with pytest.raises(ValueError, match="inconsistent"):
        SignalCatalog().preload(bad)
    cat = _two()
    with pytest.raises(RuntimeError):
        cat.preload(recs)


def test_damaged_catalog_file_reads_as_none(tmp_path):
    p = tmp_path / "signals.json"
    assert load_catalog(p) is None
    p.write_text('{"format": 1, "signals": [')
    assert load_catalog(p) is None
    p.write_text('{"format": 7, "signals": []}')
    assert load_catalog(p) is None
