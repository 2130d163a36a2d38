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


def test_catalog_file_appends_what_changed_and_reads_back_last_wins(tmp_path):
    from edge_agent.signals import CatalogFile

    p = tmp_path / "signals.json"
    cat = _two()
    f = CatalogFile(p)
    f.save(cat)
    assert (f.rewrites, f.appends) == (1, 0)
    f.save(cat)  # nothing changed: no write
    size = p.stat().st_size
    assert (f.rewrites, f.appends) == (1, 0)
    cat.register(SignalSpec(name="new", asset="p/l/a", connector="c1"))
    cat.register(SignalSpec(name="t", asset="p/l/a", unit="K", connector="c1", extra={"topic": "x/t"}))  # changed
    f.save(cat)
    assert (f.rewrites, f.appends) == (1, 1)
    lines = p.read_text().splitlines()
    assert len(lines) == 1 + 2 + 2 and p.stat().st_size > size  # header, two first records, two appended
    assert load_catalog(p) == cat.to_records()  # the last line of an id wins; ordered by id
    assert load_catalog(p)[0]["unit"] == "K"


def test_catalog_file_compacts_when_replaced_lines_pile_up(tmp_path):
    from edge_agent.signals import CatalogFile

    p = tmp_path / "signals.json"
    cat = _two()
    f = CatalogFile(p)
    f.save(cat)
    for i in range(80):  # the same signal refined again and again (e.g. units read at connect)
        cat.register(SignalSpec(name="t", asset="p/l/a", unit=f"u{i}", connector="c1"), replace=True)
        f.save(cat)
    assert f.rewrites >= 2 and len(p.read_text().splitlines()) <= 1 + 2 * 2 + 64
    assert load_catalog(p) == cat.to_records()


def test_a_torn_last_line_is_ignored_and_a_damaged_middle_line_is_not(tmp_path):
    from edge_agent.signals import CatalogFile

    p = tmp_path / "signals.json"
    cat = _two()
    CatalogFile(p).save(cat)
    good = p.read_text()
    p.write_text(good + '{"id": 2, "key": "p/l/a/ne')  # a crash cut the append short
    assert load_catalog(p) == cat.to_records()
    lines = good.splitlines()
    p.write_text("\n".join([lines[0], lines[1][:-5], lines[2]]) + "\n")
    assert load_catalog(p) is None


def test_format_1_catalog_files_still_read(tmp_path):
    import json

    p = tmp_path / "signals.json"
    p.write_text(json.dumps({"format": 1, "signals": _two().to_records()}))
    assert load_catalog(p) == _two().to_records()


def test_a_failed_append_makes_the_next_save_rewrite(tmp_path):
    from edge_agent.signals import CatalogFile

    p = tmp_path / "signals.json"
    cat = _two()
    f = CatalogFile(p)
    f.save(cat)
    cat.register(SignalSpec(name="new", asset="p/l/a", connector="c1"))
    p.unlink()
    p.mkdir()  # the append fails (a real OSError, even as root)
    with pytest.raises(OSError):
        f.save(cat)
    p.rmdir()
    f.save(cat)
    assert f.rewrites == 2 and f.appends == 0 and load_catalog(p) == cat.to_records()
