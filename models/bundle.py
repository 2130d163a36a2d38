"""The model bundle: ``model.onnx`` + ``model.json`` in one directory.

``model.json`` (format ``axedge-model/1``) holds everything the edge needs to feed the graph and
judge its output: the input signals in graph order with units, the sampling period, window and
hop, the threshold and the rule that produced it, the training-data fingerprint, validation
metrics, the axedge version, the ONNX opset and the sha256 of ``model.onnx`` (a half-copied
bundle is refused on load).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from models.errors import BundleError, InputMismatch
from models.features import to_frame, valid_windows, windows

FORMAT = "axedge-model/1"
ONNX_FILE = "model.onnx"
META_FILE = "model.json"
REQUIRED_KEYS = ("format", "kind", "inputs", "sampling_period_ns", "window", "hop", "threshold", "onnx_sha256")


@dataclass
class Bundle:
    """A trained model: the ONNX graph bytes and its metadata. Scoring runs through ONNX Runtime,
    the same path as at the edge."""

    meta: dict[str, Any]
    onnx_bytes: bytes
    _session: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ metadata
    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def signals(self) -> list[str]:
        return [i["name"] for i in self.meta["inputs"]]

    @property
    def units(self) -> dict[str, str | None]:
        return {i["name"]: i.get("unit") for i in self.meta["inputs"]}

    @property
    def window(self) -> int:
        return int(self.meta["window"])

    @property
    def hop(self) -> int:
        return int(self.meta["hop"])

    @property
    def period_ns(self) -> int:
        return int(self.meta["sampling_period_ns"])

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"]["value"])

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the bundle atomically: each file is staged as ``*.tmp``, fsynced and renamed;
        ``model.json`` (which carries the ONNX checksum) goes last."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _atomic_write(d / ONNX_FILE, self.onnx_bytes)
        _atomic_write(d / META_FILE, json.dumps(self.meta, indent=2, sort_keys=False).encode())
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return d

    # ------------------------------------------------------------------ inference
    def session(self, threads: int = 1):
        """The ONNX Runtime session (created once, ``threads`` intra-op threads)."""
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            try:
                self._session = ort.InferenceSession(self.onnx_bytes, so, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own non-exported exception types
                raise BundleError(f"ONNX Runtime cannot load the {self.kind} model: {exc}") from exc
        return self._session

    def run(self, x: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Scores and contributions for windows ``x`` (N, window, S) through ONNX Runtime."""
        sess = self.session()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.window, len(self.signals)):
            raise InputMismatch(f"expected windows of shape (N, {self.window}, {len(self.signals)}), got {x.shape}")
        scores, contribs = [], []
        for s in range(0, len(x), batch):
            sc, co = sess.run(None, {"x": x[s : s + batch]})
            scores.append(sc)
            contribs.append(co)
        if not scores:
            return np.empty(0, np.float32), np.empty((0, len(self.signals)), np.float32)
        return np.concatenate(scores), np.concatenate(contribs)

    def score(self, data: Any, *, time_column: str | None = None, contributions: bool = False):
        """Score every row of ``data`` (pyarrow Table or pandas DataFrame, wide or long layout).

        Returns one row per input row (per grid row for long tables) with ``time``, ``score``
        (float, NaN where no complete window ends: the first ``window - 1`` rows, rows after a
        gap or with a missing input) and ``anomaly`` (bool); with ``contributions`` also one
        ``contrib.<signal>`` column per input. Same type as ``data`` (DataFrame in, DataFrame out).
        """
        tc = time_column or self.meta.get("time_column", "time")
        frame = to_frame(data, self.signals, tc, period_ns=self.period_ns)
        n, w = len(frame.times_ns), self.window
        score = np.full(n, np.nan)
        contrib = np.full((n, len(self.signals)), np.nan)
        if n >= w:
            ok = valid_windows(frame.times_ns, frame.values, w, self.period_ns)
            idx = np.nonzero(ok)[0]
            view = windows(frame.values, w)
            for s in range(0, len(idx), 65536):  # bounded memory: windows are copied per slice
                part = idx[s : s + 65536]
                sc, co = self.run(view[part])
                score[part + w - 1] = sc
                contrib[part + w - 1] = co
        cols = {
            "time": pa.array(frame.times_ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "score": pa.array(score, mask=np.isnan(score)),
            "anomaly": pa.array(np.nan_to_num(score, nan=-np.inf) > self.threshold),
        }
        if contributions:
            for j, s in enumerate(self.signals):
                cols[f"contrib.{s}"] = pa.array(contrib[:, j], mask=np.isnan(contrib[:, j]))
        out = pa.table(cols)
        if not isinstance(data, (pa.Table, pa.RecordBatch)):
            return out.to_pandas()
        return out

    def contributions(self, data: Any, *, time_column: str | None = None):
        """:meth:`score` with the per-signal contribution columns."""
        return self.score(data, time_column=time_column, contributions=True)


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(directory: str | os.PathLike) -> Bundle:
    """Load and check a bundle directory (files present, JSON complete, ONNX checksum matches).
    Raises :class:`~models.errors.BundleError` with the path and the problem."""
    d = Path(directory)
    try:
        raw = (d / META_FILE).read_bytes()
        onnx_bytes = (d / ONNX_FILE).read_bytes()
    except OSError as exc:
        raise BundleError(f"{d}: cannot read bundle: {exc.strerror or exc}") from exc
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{d / META_FILE}: not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{d / META_FILE}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{d / META_FILE}: missing keys {missing}")
    if meta["format"] != FORMAT:
        raise BundleError(f"{d / META_FILE}: unsupported format {meta['format']!r} (expected {FORMAT})")
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != meta["onnx_sha256"]:
        raise BundleError(f"{d / ONNX_FILE}: sha256 {digest[:12]}... does not match model.json ({str(meta['onnx_sha256'])[:12]}...)")
    return Bundle(meta, onnx_bytes)


__all__ = ["Bundle", "load"]
