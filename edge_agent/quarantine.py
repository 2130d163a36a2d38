"""Bounded quarantine for bad payloads: raw bytes and the reason, for later inspection.

One JSON-lines file per connector under ``<state_dir>/quarantine/``; when a file passes
``max_bytes`` it is rotated to ``.1`` (the previous ``.1`` is dropped and counted), so the area
never grows without bound. Payloads are stored base64-encoded; secrets never pass through here
(connectors quarantine payloads, not credentials).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class Quarantine:
    def __init__(self, root: Path, max_bytes: int = 16 * 1024 * 1024, max_payload_bytes: int = 64 * 1024) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_payload_bytes = max_payload_bytes
        self.rotated_out = 0
        self._lock = threading.Lock()

    def path_for(self, connector_id: str) -> Path:
        return self.root / f"{connector_id}.jsonl"

    def __call__(self, connector_id: str, raw: bytes, reason: str, meta: dict[str, Any]) -> None:
        rec = {
            "time": time.time(),
            "connector": connector_id,
            "reason": reason,
            "meta": {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v)) for k, v in meta.items()},
            "size": len(raw),
            "truncated": len(raw) > self.max_payload_bytes,
            "raw_b64": base64.b64encode(raw[: self.max_payload_bytes]).decode("ascii"),
        }
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        p = self.path_for(connector_id)
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                if p.exists() and p.stat().st_size + len(line) > self.max_bytes:
                    old = p.with_suffix(".jsonl.1")
                    if old.exists():
                        self.rotated_out += 1
                    os.replace(p, old)
            except OSError:
                pass  # rotation is best effort; the append below reports real I/O problems
            with open(p, "a", encoding="utf-8") as f:
                f.write(line)
