"""Unit codes: what users write in configs and mapping files -> UCUM code and UNECE Rec 20 code.

UCUM (https://ucum.org) is the machine-readable unit of the dataset metadata; the UNECE
Recommendation 20 common code is added where one exists (OPC UA EngineeringUnits and many MES
and ERP systems use it). Unknown units are kept verbatim with ``ucum=None``: a missing code is
better than a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    ucum: str
    unece: str | None
    label: str  # human readable


# UCUM code -> (UNECE code, label). Only units we meet on shop floors; extend as needed.
_UNITS: dict[str, tuple[str | None, str]] = {
    "Cel": ("CEL", "degree Celsius"),
    "K": ("KEL", "kelvin"),
    "[degF]": ("FAH", "degree Fahrenheit"),
    "bar": ("BAR", "bar"),
    "mbar": ("MBR", "millibar"),
    "Pa": ("PAL", "pascal"),
    "kPa": ("KPA", "kilopascal"),
    "MPa": ("MPA", "megapascal"),
    "m": ("MTR", "metre"),
    "mm": ("MMT", "millimetre"),
    "um": ("4H", "micrometre"),
    "m/s": ("MTS", "metre per second"),
    "mm/s": ("C16", "millimetre per second"),
    "mm/min": (None, "millimetre per minute"),
    "m/s2": ("MSK", "metre per second squared"),
    "mm/s2": (None, "millimetre per second squared"),
    "[g]": (None, "standard gravity (acceleration)"),
    "/min": ("RPM", "revolutions per minute"),
    "Hz": ("HTZ", "hertz"),
    "A": ("AMP", "ampere"),
    "mA": ("4K", "milliampere"),
    "V": ("VLT", "volt"),
    "mV": ("2Z", "millivolt"),
    "W": ("WTT", "watt"),
    "kW": ("KWT", "kilowatt"),
    "kW.h": ("KWH", "kilowatt hour"),
    "J": ("JOU", "joule"),
    "N": ("NEW", "newton"),
    "kN": ("B47", "kilonewton"),
    "N.m": ("NU", "newton metre"),
    "kg": ("KGM", "kilogram"),
    "g": ("GRM", "gram"),
    "t": ("TNE", "tonne"),
    "L": ("LTR", "litre"),
    "L/min": ("L2", "litre per minute"),
    "m3/h": ("MQH", "cubic metre per hour"),
    "kg/h": ("E93", "kilogram per hour"),
    "s": ("SEC", "second"),
    "ms": ("C26", "millisecond"),
    "min": ("MIN", "minute"),
    "h": ("HUR", "hour"),
    "%": ("P1", "percent"),
    "1": ("C62", "one (dimensionless)"),
    "{count}": ("C62", "count"),
    "{piece}": ("H87", "piece"),
    "mol%": (None, "mole percent"),
    "kmol/h": (None, "kilomole per hour"),
    "kg/m3": ("KMQ", "kilogram per cubic metre"),
    "dB": ("2N", "decibel"),
}

# What people write -> UCUM code (case-sensitive first, then lower-cased).
_ALIASES: dict[str, str] = {
    "degC": "Cel", "°C": "Cel", "C": "Cel", "celsius": "Cel", "deg C": "Cel",
    "degF": "[degF]", "°F": "[degF]", "kelvin": "K",
    "rpm": "/min", "RPM": "/min", "1/min": "/min", "{rev}/min": "/min",
    "l/min": "L/min", "lpm": "L/min", "l": "L", "m^3/h": "m3/h", "m³/h": "m3/h",
    "m/s^2": "m/s2", "m/s²": "m/s2", "mm/s^2": "mm/s2", "mm/s²": "mm/s2",
    "Nm": "N.m", "kWh": "kW.h", "µm": "um", "percent": "%", "pct": "%",
    "count": "{count}", "counts": "{count}", "pcs": "{piece}", "pieces": "{piece}",
    "sec": "s", "seconds": "s", "hours": "h", "g0": "[g]",
}
_LOWER = {k.lower(): v for k, v in {**{u: u for u in _UNITS}, **_ALIASES}.items()}


def lookup(unit: str | None) -> Unit | None:
    """The UCUM / UNECE codes of ``unit`` (a UCUM code or a common spelling); None if unknown."""
    if not unit:
        return None
    u = unit.strip()
    code = u if u in _UNITS else _ALIASES.get(u) or _LOWER.get(u.lower())
    if code is None:
        return None
    unece, label = _UNITS[code]
    return Unit(ucum=code, unece=unece, label=label)


def describe(unit: str | None) -> dict[str, str | None]:
    """Metadata fields for a signal's unit: ``unit`` (as given), ``ucum``, ``unece``."""
    found = lookup(unit)
    return {"unit": unit, "ucum": found.ucum if found else None, "unece": found.unece if found else None}
