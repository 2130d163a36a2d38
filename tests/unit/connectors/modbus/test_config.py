"""Bad Modbus configs fail with ``file:line key: message`` pointing at the offending key."""

import textwrap

import pytest

from edge_agent.config import load_config_text
from edge_agent.errors import ConfigError

HEAD = """\
connectors:
  - id: mb
    type: modbus
    asset: plant/casting/line1
    devices:
      - name: plc1
        host: 127.0.0.1
"""


def load(devices_tail: str):
    return load_config_text(HEAD + textwrap.indent(textwrap.dedent(devices_tail).lstrip("\n"), " " * 8), fname="plant.yaml")


def problems(tail: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load(tail)
    return ei.value.problems


def test_valid_config_loads_with_defaults():
    cfg = load(
        """
        units:
          - unit_id: 3
            signals:
              - {name: temp, address: 0, type: float32}
              - {name: run, table: coil, address: 7}
        """
    )
    dev = cfg.connectors[0].devices[0]
    assert dev.units[0].signals[0].width == 2
    assert dev.units[0].signals[1].value_type.value == "bool"
    assert dev.group_intervals() == {"default": 1.0}


def test_overlapping_addresses_name_both_signals_and_line():
    (p,) = problems(
        """
        units:
          - unit_id: 1
            signals:
              - {name: temp, address: 10, type: float32}
              - {name: pressure, address: 11, type: int16}
        """
    )
    assert p.startswith("plant.yaml:12 connectors[0].devices[0].units[0].signals[1].address:")
    assert "holding addresses 11..11 overlap signal 'temp' (10..11) in unit 1" in p


def test_bits_of_the_same_register_do_not_overlap_but_the_same_bit_does():
    load(
        """
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 5, type: bit, bit: 0}
              - {name: b, address: 5, type: bit, bit: 1}
        """
    )
    (p,) = problems(
        """
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 5, type: bit, bit: 3}
              - {name: b, address: 5, type: bit, bit: 3}
        """
    )
    assert "overlap signal 'a'" in p


def test_same_address_in_another_table_or_unit_is_fine():
    load(
        """
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 5}
              - {name: b, address: 5, table: input}
          - unit_id: 2
            signals:
              - {name: c, address: 5}
        """
    )


def test_address_out_of_range_one_based():
    (p,) = problems(
        """
        addressing: one_based
        units:
          - unit_id: 1
            signals:
              - name: ok
                address: 1
              - name: low
                address: 0
        """
    )
    assert p.startswith("plant.yaml:15 connectors[0].devices[0].units[0].signals[1].address:")
    assert "address 0..0 is out of range 1..65536 (one_based addressing)" in p


def test_value_running_past_the_end_of_the_table():
    (p,) = problems(
        """
        units:
          - unit_id: 1
            signals:
              - {name: big, address: 65534, type: float64}
        """
    )
    assert "plant.yaml:11 " in p and "address 65534..65537 is out of range 0..65535" in p


@pytest.mark.parametrize(
    ("sig", "message"),
    [
        ("{name: x, address: 0, type: float32, count: 1}", "type float32 takes 2 register(s), not count 1"),
        ("{name: x, address: 0, type: string}", "type string needs 'count'"),
        ("{name: x, address: 0, type: bcd, count: 3}", "type bcd takes 1 or 2 registers, not count 3"),
        ("{name: x, address: 0, table: coil, type: int16}", "type int16 does not fit table coil"),
        ("{name: x, address: 0, type: bool}", "type bool is for coils and discrete inputs"),
        ("{name: x, address: 0, type: bit}", "'bit' is required for type bit"),
    ],
)
def test_type_that_does_not_fit_count_or_table(sig, message):
    (p,) = problems(
        f"""
        units:
          - unit_id: 1
            signals:
              - {sig}
        """
    )
    assert p.startswith("plant.yaml:11 connectors[0].devices[0].units[0].signals[0]:"), p
    assert message in p


def test_zero_interval_is_rejected_with_its_line():
    (p,) = problems(
        """
        poll_interval_secs: 0
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 0}
        """
    )
    assert p.startswith("plant.yaml:8 connectors[0].devices[0].poll_interval_secs:")
    assert "greater than 0" in p


def test_unknown_poll_group_and_duplicate_group():
    (p,) = problems(
        """
        poll_groups:
          - {name: fast, poll_interval_secs: 0.1}
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 0, poll_group: slow}
        """
    )
    assert "signals[0].poll_group: unknown poll group 'slow'; declared: default, fast" in p
    (p,) = problems(
        """
        poll_groups:
          - {name: default, poll_interval_secs: 0.1}
        units:
          - unit_id: 1
            signals:
              - {name: a, address: 0}
        """
    )
    assert "poll_groups[0].name: poll group 'default' is declared twice" in p


def test_duplicate_unit_and_duplicate_signal_key_across_devices():
    (p,) = problems(
        """
        units:
          - unit_id: 1
            signals: [{name: a, address: 0}]
          - unit_id: 1
            signals: [{name: b, address: 0}]
        """
    )
    assert "units[1].unit_id: unit_id 1 is listed twice" in p
    (p,) = problems(
        """
        units:
          - unit_id: 1
            signals: [{name: a, address: 0}]
          - unit_id: 2
            signals: [{name: a, address: 1}]
        """
    )
    assert "units[1].signals[0].name: signal 'plant/casting/line1/a' is also declared on device plc1 unit 1" in p


def test_transport_needs_its_endpoint():
    with pytest.raises(ConfigError) as ei:
        load_config_text(
            HEAD.replace("host: 127.0.0.1", "transport: rtu")
            + "        units: [{unit_id: 1, signals: [{name: a, address: 0}]}]\n",
            fname="plant.yaml",
        )
    assert "transport rtu needs 'serial_port'" in str(ei.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("transport: rtu_over_tcp\n", "max_concurrent_requests 2 needs transport tcp: a serial line"),
        ("pause_between_requests_secs: 0.05\n", "cannot keep pause_between_requests_secs"),
    ],
)
def test_concurrent_requests_only_on_tcp_without_pauses(extra, message):
    (p,) = problems("max_concurrent_requests: 2\n" + extra + "units: [{unit_id: 1, signals: [{name: a, address: 0}]}]\n")
    assert p.startswith("plant.yaml:6 connectors[0].devices[0]") and message in p
    dev = load("max_concurrent_requests: 4\nunits: [{unit_id: 1, signals: [{name: a, address: 0}]}]\n").connectors[0].devices[0]
    assert dev.max_concurrent_requests == 4


def test_config_layer_does_not_import_pymodbus():
    import subprocess
    import sys

    code = "import sys, connectors.modbus.config; print('pymodbus' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_reference_doc_lists_every_config_key():
    from pathlib import Path

    from connectors.modbus.config import ModbusConfig, ModbusDevice, ModbusSignal, ModbusUnit, PollGroup

    doc = (Path(__file__).resolve().parents[4] / "docs" / "connectors" / "modbus.md").read_text()
    missing = [
        f"{m.__name__}.{name}"
        for m in (ModbusConfig, ModbusDevice, ModbusUnit, ModbusSignal, PollGroup)
        for name in m.model_fields
        if f"`{name}`" not in doc
    ]
    assert not missing, f"document these keys in docs/connectors/modbus.md: {missing}"
