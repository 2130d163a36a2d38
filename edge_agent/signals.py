"""The signal catalog: every signal declared once, the hot path carries integer ids.

A signal has an asset path (ISA-95 style: site/area/line/cell/asset, 1 to 5 levels), a name
unique within its asset, a unit, a data type, the source address it is read from, and optional
semantic id and description. Signals come from the config or are discovered at run time (OPC UA
browse, MQTT topic templates, Sparkplug births); both go through :meth:`SignalCatalog.register`.

Ids are run-local, but batches in a durable buffer outlive the run that wrote them. So the agent
saves the catalog (:func:`save_catalog`) before any batch that uses a new id enters a buffer, and
a restart that finds rows waiting in a buffer preloads it (:meth:`SignalCatalog.preload`): every
key gets its old id back whatever order the connectors register in this time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from dataset_builder.format import asset_partition_value
from dataset_builder.manifest import fsync_dir


class DataType(str, Enum):
    bool = "bool"
    int8 = "int8"
    int16 = "int16"
    int32 = "int32"
    int64 = "int64"
    uint8 = "uint8"
    uint16 = "uint16"
    uint32 = "uint32"
    uint64 = "uint64"
    float32 = "float32"
    float64 = "float64"
    string = "string"
    datetime = "datetime"
    json = "json"  # arrays and structures, carried as JSON text

    @property
    def is_text(self) -> bool:
        return self in (DataType.string, DataType.json, DataType.datetime)


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """What a connector declares about a signal."""

    name: str
    asset: str
    dtype: DataType = DataType.float64
    unit: str | None = None
    address: str = ""
    connector: str = ""
    semantic_id: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Globally unique key: ``<asset path>/<name>``."""
        return f"{self.asset.strip('/')}/{self.name}"


@dataclass(frozen=True, slots=True)
class Signal:
    id: int
    spec: SignalSpec
    key: str = ""
    partition: str = ""

    @classmethod
    def make(cls, id_: int, spec: SignalSpec) -> Signal:
        return cls(id_, spec, spec.key, asset_partition_value(spec.asset))

    def record(self) -> dict[str, Any]:
        """The plain dict row of this signal (``SignalCatalog.to_records``, the saved catalog)."""
        sp = self.spec
        return {
            "id": self.id,
            "key": self.key,
            "name": sp.name,
            "asset": sp.asset,
            "asset_partition": self.partition,
            "unit": sp.unit,
            "dtype": sp.dtype.value,
            "address": sp.address,
            "connector": sp.connector,
            "semantic_id": sp.semantic_id,
            "description": sp.description,
            "extra": dict(sp.extra),
        }


class DuplicateSignal(ValueError):
    pass


class SignalCatalog:
    """Assigns dense int ids to signals. Thread-safe; ``version`` bumps on every change so sinks
    know when to rewrite the catalog file."""

    def __init__(self) -> None:
        self._by_key: dict[str, Signal] = {}
        self._by_id: list[Signal] = []
        self._lock = threading.Lock()
        self._provisional: set[int] = set()  # preloaded from an earlier run, not declared again yet
        self.version = 0

    def preload(self, records: list[dict[str, Any]]) -> int:
        """Install the signals of an earlier run (``to_records`` rows) under their old ids, as
        provisional: the first connector that declares the same key again takes the id over, with
        its current spec. Only on an empty catalog; the ids must be dense (0..n-1). Returns how
        many were installed."""
        with self._lock:
            if self._by_id:
                raise RuntimeError("preload needs an empty catalog")
            rows = sorted(records, key=lambda r: int(r["id"]))
            if [int(r["id"]) for r in rows] != list(range(len(rows))):
                raise ValueError("stored signal ids are not dense 0..n-1")
            by_key: dict[str, Signal] = {}
            for r in rows:  # checked in full before anything is installed
                spec = SignalSpec(
                    name=r["name"], asset=r["asset"], dtype=DataType(r["dtype"]), unit=r.get("unit"),
                    address=r.get("address") or "", connector=r.get("connector") or "",
                    semantic_id=r.get("semantic_id"), description=r.get("description"),
                    extra=dict(r.get("extra") or {}),
                )
                if spec.key != r["key"] or spec.key in by_key:
                    raise ValueError(f"stored signal {r['key']!r} is inconsistent or repeated")
                sig = Signal.make(int(r["id"]), spec)
                by_key[sig.key] = sig  # one key string per signal (``spec.key`` builds a new one)
            self._by_key = by_key
            self._by_id = list(by_key.values())
            self._provisional = set(range(len(rows)))
            self.version += 1
            return len(rows)

    def register(self, spec: SignalSpec, *, replace: bool = False) -> int:
        """Register ``spec`` and return its id. Registering the same key again returns the same id
        when the spec is identical (or ``replace`` is set: metadata read at connect, e.g. OPC UA
        EngineeringUnits, refines the declared spec); a different spec under the same key from
        another connector raises :class:`DuplicateSignal`."""
        with self._lock:
            old = self._by_key.get(spec.key)
            if old is not None:
                provisional = old.id in self._provisional
                self._provisional.discard(old.id)
                if old.spec == spec:
                    return old.id
                if replace or provisional or old.spec.connector == spec.connector:
                    sig = Signal.make(old.id, spec)
                    self._by_key[sig.key] = sig
                    self._by_id[old.id] = sig
                    self.version += 1
                    return old.id
                raise DuplicateSignal(
                    f"signal {spec.key!r} declared by connector {spec.connector!r} "
                    f"is already declared by connector {old.spec.connector!r}"
                )
            sig = Signal.make(len(self._by_id), spec)
            self._by_id.append(sig)
            self._by_key[sig.key] = sig
            self.version += 1
            return sig.id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(list(self._by_id))

    def get(self, signal_id: int) -> Signal:
        return self._by_id[signal_id]

    def by_key(self, key: str) -> Signal | None:
        return self._by_key.get(key)

    def snapshot(self) -> list[Signal]:
        with self._lock:
            return list(self._by_id)

    def to_records(self) -> list[dict[str, Any]]:
        """Plain dict rows (for the dataset's signal catalog). No deep copies: 10,000 signals
        must not stall the sink (``dataclasses.asdict`` took ~1 s here)."""
        return [sig.record() for sig in self.snapshot()]


log = logging.getLogger("axedge.signals")


FORMAT_LINES = 2  # JSON lines; format 1 (one JSON document) is still read


def _line(sig: Signal) -> str:
    return json.dumps(sig.record(), separators=(",", ":"), default=str) + "\n"


class CatalogFile:
    """The agent's saved signal catalog (``<state_dir>/signals.json``): JSON lines, a header
    ``{"format":2}`` then one record per line; the last line of an id wins.

    A save appends only the signals added or changed since the last save (one write, one fsync),
    so an MQTT connector that discovers thousands of topics one flush at a time does not rewrite
    the whole catalog each time. The file is rewritten (temp file, fsync, rename, directory
    fsync) at the first save of a process and when replaced lines outnumber the live ones. A
    crash during an append leaves a torn last line, which :func:`load_catalog` ignores: the save
    completes before the batch that needs it enters the buffer, so no buffered row refers to it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._saved: dict[int, Signal] = {}
        self._lines = 0
        self._must_rewrite = True  # first save of the process, or after a failed write
        self.rewrites = 0
        self.appends = 0

    def save(self, catalog: SignalCatalog) -> None:
        sigs = catalog.snapshot()
        changed = [s for s in sigs if self._saved.get(s.id) is not s]
        if not changed and not self._must_rewrite:
            return
        try:
            if self._must_rewrite or self._lines + len(changed) > 2 * len(sigs) + 64:
                self._rewrite(sigs)
                self._saved = {s.id: s for s in sigs}
                self._must_rewrite = False
                return
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(_line(s) for s in changed))
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self._must_rewrite = True  # a half-written append must not stay in the middle of the file
            raise
        self._lines += len(changed)
        self.appends += 1
        for sig in changed:
            self._saved[sig.id] = sig

    def _rewrite(self, sigs: list[Signal]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"format": FORMAT_LINES}) + "\n")
            for i in range(0, len(sigs), 1000):  # a string per thousand signals, not one per file
                f.write("".join(_line(s) for s in sigs[i:i + 1000]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self._lines = len(sigs)
        self.rewrites += 1


def save_catalog(path: Path, catalog: SignalCatalog) -> None:
    """Write the whole catalog to ``path`` atomically (a new :class:`CatalogFile`'s first save)."""
    CatalogFile(path).save(catalog)


def load_catalog(path: Path) -> list[dict[str, Any]] | None:
    """The records saved by :class:`CatalogFile` (or format 1), by id, or None when there is no
    usable file (a damaged one is logged; rows it would have named are then kept as
    ``unknown/<id>`` by the writer)."""
    path = Path(path)
    try:
        first, _, rest = path.read_text(encoding="utf-8").partition("\n")
        head = json.loads(first)  # the header line; a format 1 file is one line: the whole document
        if head.get("format") == 1 and isinstance(head.get("signals"), list):
            return head["signals"]
        if head.get("format") != FORMAT_LINES:
            raise ValueError(f"unknown catalog format {head.get('format')!r}")
        lines = rest.split("\n")
        torn = lines.pop()  # "" after the last newline, or a line a crash cut short
        by_id: dict[int, dict[str, Any]] = {}
        for n, line in enumerate(lines, start=2):
            try:
                rec = json.loads(line)
                by_id[int(rec["id"])] = rec
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"line {n}: {exc}") from exc
        if torn:
            log.warning("signal catalog ends with a torn line (an append cut short); ignored",
                        extra={"path": str(path)})
        return [by_id[i] for i in sorted(by_id)]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        log.error("stored signal catalog unusable; buffered rows may be written as unknown/<id>",
                  extra={"path": str(path), "error": str(exc)})
        return None
