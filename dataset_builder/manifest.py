"""The commit manifest ``_axedge/manifest.jsonl``: one JSON line per commit, append-only.

A commit is durable exactly when its line (ending in ``\\n``) is fsynced: that is the commit
point of the writer's protocol (see ``docs/dataset-format.md``). A line without its newline, or
one that does not parse, can only be the last one (a crash while appending); it is not a commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_builder.format import STAGED_SUFFIX, STAGING_DIR, DatasetError

MANIFEST_VERSION = 1
_REQUIRED = ("commit", "files", "buffers")


@dataclass
class ManifestState:
    """What :func:`read_manifest` found."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    #: bytes of an incomplete / unparsable last line (None when the file ends cleanly)
    torn_tail: bytes | None = None
    #: length of the file up to the end of the last valid line
    valid_size: int = 0


def read_manifest(path: Path) -> ManifestState:
    """Parse the manifest. A torn or garbled *last* line is returned as ``torn_tail``; a garbled
    line anywhere else raises :class:`DatasetError` (the manifest was damaged, not torn)."""
    state = ManifestState()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return state
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {path}: {exc.strerror}", path=str(path),
                           hint="check permissions of the dataset directory") from exc
    pos = 0
    lineno = 0
    while pos < len(data):
        lineno += 1
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        entry = _parse_line(line) if nl >= 0 else None
        if entry is None:
            if end < len(data):
                raise DatasetError(
                    f"manifest {path} line {lineno} is corrupt (it is not the last line, so this is "
                    "not a torn write)",
                    path=str(path),
                    hint="restore the manifest from a backup; do not edit committed lines by hand",
                )
            state.torn_tail = line
            break
        state.entries.append(entry)
        pos = end
        state.valid_size = pos
    return state


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(entry, dict) or any(k not in entry for k in _REQUIRED):
        return None
    return entry


def append_entry(path: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` as one line and fsync: the commit point.

    On failure the file is truncated back to its previous length (best effort) so no half line
    is left for the next append; if even that fails, :func:`read_manifest` treats the half line
    as a torn tail at the next open.
    """
    line = (json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write to manifest")
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError:
                pass  # the torn line is detected and ignored by read_manifest at the next open
            raise
    finally:
        os.close(fd)


def truncate_to(path: Path, size: int) -> None:
    """Cut a torn tail off the manifest so appends start on a clean line."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def watermarks(entries: list[dict[str, Any]]) -> dict[str, int]:
    """``{buffer_id: highest committed seq}`` over all commits."""
    marks: dict[str, int] = {}
    for e in entries:
        for buf, (_first, last) in e["buffers"].items():
            if last > marks.get(buf, -1 << 62):
                marks[buf] = int(last)
    return marks


def staged_path(final_rel: str) -> str:
    """Where a committed file was staged: ``_staging/<basename>.tmp`` (basenames are unique)."""
    return f"{STAGING_DIR}/{final_rel.rsplit('/', 1)[-1]}{STAGED_SUFFIX}"


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and creations inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iso_us(us: int) -> str:
    """``2026-11-23T19:25:45.123456Z`` for microseconds since the epoch."""
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(us))
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
