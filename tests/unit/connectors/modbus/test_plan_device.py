"""plan_device: signal registration (asset resolution, addresses, dtypes) and blocks per poll group."""

from connectors.modbus.connector import plan_device
from edge_agent.config import load_config_text
from edge_agent.signals import SignalCatalog

SECTION = """
connectors:
  - id: mb
    type: modbus
    asset: plant1/casting
    devices:
      - name: plc1
        host: 127.0.0.1
        asset: plant1/casting/line1
        addressing: one_based
        byte_order: CDAB
        poll_groups: [{name: fast, poll_interval_secs: 0.1}]
        units:
          - unit_id: 3
            asset: plant1/casting/line1/pourer
            signals:
              - {name: temp, address: 1, type: float32, unit: Cel, poll_group: fast}
              - {name: level, address: 3, type: int16, scale: 0.5}
              - {name: flag, address: 4, type: bit, bit: 2}
              - {name: code, address: 5, type: string, count: 2}
              - {name: pump, address: 10, type: float32, asset: plant1/casting/line1/pump}
              - {name: run, table: coil, address: 1}
"""


def test_assets_addresses_and_dtypes():
    cfg = load_config_text(SECTION, fname="plant.yaml").connectors[0]
    cat = SignalCatalog()
    groups = plan_device(cfg, cfg.devices[0], cat.register)
    specs = {s.spec.name: s.spec for s in cat}
    assert specs["temp"].asset == "plant1/casting/line1/pourer"
    assert specs["pump"].asset == "plant1/casting/line1/pump"  # per-signal asset wins
    assert specs["temp"].address == "modbus://plc1/3/holding/1:float32:CDAB"
    assert specs["flag"].address == "modbus://plc1/3/holding/4:bit.2"
    assert specs["code"].address == "modbus://plc1/3/holding/5:string[2]:CDAB"
    assert (specs["temp"].dtype.value, specs["level"].dtype.value, specs["flag"].dtype.value, specs["code"].dtype.value) == (
        "float32", "float64", "bool", "string",
    )
    assert specs["temp"].unit == "Cel" and specs["temp"].connector == "mb"
    fast = [(p.block.table.value, p.block.start, p.block.count, p.ids.tolist()) for p in groups["fast"]]
    assert fast == [("holding", 0, 2, [cat.by_key("plant1/casting/line1/pourer/temp").id])]
    default = [(p.block.table.value, p.block.start, p.block.count) for p in groups["default"]]
    assert default == [("coil", 0, 1), ("holding", 2, 9)]  # wire addresses: one_based minus 1


def test_registering_twice_keeps_ids():
    cfg = load_config_text(SECTION, fname="plant.yaml").connectors[0]
    cat = SignalCatalog()
    a = plan_device(cfg, cfg.devices[0], cat.register)
    b = plan_device(cfg, cfg.devices[0], cat.register)
    assert [p.ids.tolist() for p in a["default"]] == [p.ids.tolist() for p in b["default"]]
    assert len(cat) == 6
