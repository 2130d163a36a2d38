"""JSON and plain payload decoders.

A decoder turns one payload into samples ``(name, source_time_ns, value, text, quality)``:
``name`` is None for the topic's own signal, or a member name (object-of-values payloads);
``source_time_ns`` is None when the payload carries no timestamp. Every failure raises
:class:`PayloadError` with a short machine-readable ``reason`` (the quarantine reason).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone

from connectors.mqtt.config import JsonOptions, JsonShape, TimestampFormat, ValueKind
from dataset_builder.format import Quality
from edge_agent.errors import DecodeError

Sample = tuple[str | None, int | None, float, str | None, int]

_QUALITY_WORDS = {"good": Quality.GOOD, "ok": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
_NAN = float("nan")
_loads = json.JSONDecoder().decode
_TS_LIMIT = 2**62  # ns; fits int64 with room


class PayloadError(DecodeError):
    """A payload could not be decoded; ``reason`` names the quarantine bucket."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _path_getter(path: str | None) -> Callable[[dict], object] | None:
    if not path:
        return None
    keys = path.split(".")
    if len(keys) == 1:
        k = keys[0]
        return lambda d: d.get(k)

    def get(d: dict) -> object:
        cur: object = d
        for k in keys:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(k)
        return cur

    return get


def _epoch_ns(x: float, fmt: TimestampFormat) -> int:
    if fmt is TimestampFormat.auto:
        ax = abs(x)
        fmt = (TimestampFormat.epoch_s if ax < 1e11 else TimestampFormat.epoch_ms if ax < 1e14
               else TimestampFormat.epoch_us if ax < 1e17 else TimestampFormat.epoch_ns)
    if fmt is TimestampFormat.epoch_ns:
        return int(x)
    scale = {TimestampFormat.epoch_s: 1e9, TimestampFormat.epoch_ms: 1e6, TimestampFormat.epoch_us: 1e3}[fmt]
    if isinstance(x, int) and fmt is not TimestampFormat.epoch_s:
        return x * int(scale)
    return int(round(x * scale))


def parse_timestamp(raw: object, fmt: TimestampFormat) -> int:
    """ns since the epoch (UTC) from a JSON number or string."""
    if isinstance(raw, bool):
        raise PayloadError("bad_timestamp", "boolean timestamp")
    if isinstance(raw, (int, float)):
        if fmt is TimestampFormat.iso8601 or not math.isfinite(raw):
            raise PayloadError("bad_timestamp", f"expected {fmt.value}, got a number")
        ns = _epoch_ns(raw, fmt)
    elif isinstance(raw, str):
        if fmt not in (TimestampFormat.auto, TimestampFormat.iso8601):
            try:
                return parse_timestamp(float(raw), fmt)
            except ValueError:
                raise PayloadError("bad_timestamp", f"expected {fmt.value}, got text") from None
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise PayloadError("bad_timestamp", "not ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
        ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    else:
        raise PayloadError("bad_timestamp", f"timestamp of type {type(raw).__name__}")
    if not -_TS_LIMIT < ns < _TS_LIMIT:
        raise PayloadError("bad_timestamp", "out of range")
    return ns


def parse_quality(raw: object) -> int:
    if raw is None:
        return Quality.GOOD
    if isinstance(raw, bool):
        return Quality.GOOD if raw else Quality.BAD
    if isinstance(raw, int) and 0 <= raw <= 0xFFFFFFFF:
        return raw
    if isinstance(raw, str) and raw.lower() in _QUALITY_WORDS:
        return _QUALITY_WORDS[raw.lower()]
    raise PayloadError("bad_quality", "quality must be a status code, good/uncertain/bad or a boolean")


def number_or_text(raw: object, kind: ValueKind) -> tuple[float, str | None]:
    """(value, text) of a JSON scalar; text rows carry NaN as value."""
    if kind is ValueKind.text:
        if isinstance(raw, (dict, list)) or raw is None:
            raise PayloadError("wrong_type", f"expected a scalar, got {type(raw).__name__}")
        return _NAN, raw if isinstance(raw, str) else json.dumps(raw)
    if isinstance(raw, bool):
        return (1.0 if raw else 0.0), None
    if isinstance(raw, (int, float)):
        return float(raw), None
    if isinstance(raw, str):
        try:
            return float(raw), None
        except ValueError:
            pass
    raise PayloadError("wrong_type", f"expected a number, got {type(raw).__name__}")


class JsonDecoder:
    """Decoder for one subscription's JSON options (paths resolved once)."""

    def __init__(self, opts: JsonOptions, kind: ValueKind = ValueKind.number) -> None:
        self.shape = opts.shape
        self.kind = kind
        self.fmt = opts.timestamp_format
        self.value_key = opts.value_path
        self.get_value = _path_getter(opts.value_path)
        self.get_ts = _path_getter(opts.timestamp_path)
        self.get_q = _path_getter(opts.quality_path)
        self.get_samples = _path_getter(opts.samples_path)
        self._meta_keys = {p.split(".")[0] for p in (opts.timestamp_path, opts.quality_path) if p}
        # (value key, timestamp key, quality key) when every path is one level and numbers are wanted
        simple = all("." not in p for p in (opts.value_path, opts.timestamp_path or "", opts.quality_path or ""))
        self._fast = ((opts.value_path, opts.timestamp_path, opts.quality_path)
                      if simple and kind is ValueKind.number and opts.shape in (JsonShape.auto, JsonShape.value)
                      and self.fmt is not TimestampFormat.iso8601 else None)

    def __call__(self, payload: bytes) -> list[Sample]:
        try:
            doc = _loads(payload.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PayloadError("malformed_json", str(exc)[:200]) from None
        fast = self._fast
        if fast is not None and type(doc) is dict:  # hot path: {"value": <number>, "timestamp": <int>}
            v = doc.get(fast[0])
            t = doc.get(fast[1]) if fast[1] else None
            if (type(v) is float or type(v) is int) and (t is None or type(t) is int) and (not fast[2] or fast[2] not in doc):
                ns = None if t is None else _epoch_ns(t, self.fmt)
                if ns is None or -_TS_LIMIT < ns < _TS_LIMIT:
                    return [(None, ns, float(v), None, Quality.GOOD)]
        shape = self.shape
        if shape is JsonShape.auto:
            if isinstance(doc, list):
                shape = JsonShape.samples
            elif isinstance(doc, dict):
                if self.get_samples is not None and isinstance(self.get_samples(doc), list):
                    shape = JsonShape.samples
                elif self.value_key.split(".")[0] in doc:
                    shape = JsonShape.value
                else:
                    shape = JsonShape.object
            else:
                shape = JsonShape.value
        if shape is JsonShape.value:
            return [self._one(doc, None)]
        if shape is JsonShape.samples:
            items = doc if isinstance(doc, list) else (self.get_samples(doc) if isinstance(doc, dict) and self.get_samples else None)
            if not isinstance(items, list):
                raise PayloadError("wrong_type", "expected an array of samples")
            return [self._one(it, None) for it in items]
        if not isinstance(doc, dict):
            raise PayloadError("wrong_type", "expected an object of values")
        ts = self._ts(doc)
        q = parse_quality(self.get_q(doc)) if self.get_q else Quality.GOOD
        out: list[Sample] = []
        for k, v in doc.items():
            if k in self._meta_keys:
                continue
            if isinstance(v, dict) and self.get_value is not None and self.value_key.split(".")[0] in v:
                _, t2, val, text, q2 = self._one(v, k)
                out.append((k, t2 if t2 is not None else ts, val, text, q2))
                continue
            val, text = number_or_text(v, self.kind)
            out.append((k, ts, val, text, q))
        return out

    def _ts(self, doc: dict) -> int | None:
        if self.get_ts is None:
            return None
        raw = self.get_ts(doc)
        return None if raw is None else parse_timestamp(raw, self.fmt)

    def _one(self, doc: object, name: str | None) -> Sample:
        if isinstance(doc, dict):
            raw = self.get_value(doc) if self.get_value is not None else None
            if raw is None:
                raise PayloadError("wrong_type", f"no value at {self.value_key!r}")
            val, text = number_or_text(raw, self.kind)
            q = parse_quality(self.get_q(doc)) if self.get_q else Quality.GOOD
            return (name, self._ts(doc), val, text, q)
        val, text = number_or_text(doc, self.kind)
        return (name, None, val, text, Quality.GOOD)


def decode_plain(payload: bytes, kind: ValueKind = ValueKind.number) -> list[Sample]:
    """A number (or, with ``kind: text``, any text) as UTF-8."""
    try:
        s = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("invalid_utf8", "payload is not UTF-8") from None
    if kind is ValueKind.text:
        return [(None, None, _NAN, s, Quality.GOOD)]
    low = s.lower()
    if low in ("true", "false"):
        return [(None, None, 1.0 if low == "true" else 0.0, None, Quality.GOOD)]
    try:
        return [(None, None, float(s), None, Quality.GOOD)]
    except ValueError:
        raise PayloadError("wrong_type", "payload is not a number") from None
