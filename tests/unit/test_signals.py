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
