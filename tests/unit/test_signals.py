import pytest

from edge_agent.signals import DuplicateSignal, SignalCatalog, SignalSpec


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
