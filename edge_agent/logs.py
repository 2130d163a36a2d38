"""Structured, rate-limited logging.

``key=value`` text (or JSON) lines; a filter lets at most ``burst`` records of the same
(logger, message template) through per ``window_secs`` and then reports how many it held back,
so a device that fails 100 times a second cannot flood the gateway's disk.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class RateLimitFilter(logging.Filter):
    def __init__(self, burst: int = 5, window_secs: float = 10.0, clock=time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window_secs
        self.clock = clock
        self._state: dict[tuple[str, str], list[float | int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        st = self._state.get(key)
        if st is None or now - st[0] >= self.window:
            suppressed = int(st[2]) if st else 0
            self._state[key] = [now, 1, 0]
            if suppressed:
                record.suppressed = suppressed
            if len(self._state) > 10_000:
                self._state.clear()
            return True
        if st[1] < self.burst:
            st[1] += 1
            return True
        st[2] += 1
        return False


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [ts, f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={json.dumps(record.getMessage())}"]
        for k, v in _extras(record).items():
            parts.append(f"{k}={json.dumps(v, default=str)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, default=str)


def setup_logging(level: str = "info", fmt: str = "text", stream=None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RateLimitFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("asyncua", "pymodbus", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
