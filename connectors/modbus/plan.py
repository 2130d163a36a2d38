"""The read planner: coalesce signals into as few Modbus requests as the device allows.

Pure logic, no I/O. Signals are grouped per (poll group, unit, table); within a group they are
sorted by address and merged greedily into a block while the block stays within the per-request
limit and the hole between neighbours is at most ``max_gap``. Reading a few unused registers is
far cheaper than another round trip (about one request time per block on TCP, more on RTU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.modbus.config import Table


@dataclass(frozen=True, slots=True)
class ReadItem:
    """One signal to read: ``key`` is the caller's handle (e.g. its index)."""

    key: int
    start: int  # wire (zero-based) address
    width: int  # registers, or bits for coil / discrete_input tables


@dataclass(slots=True)
class ReadBlock:
    """One request: ``count`` registers / bits from ``start`` on ``unit_id``'s ``table``."""

    unit_id: int
    table: Table
    start: int
    count: int
    items: list[ReadItem] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + self.count - 1


def plan_blocks(
    unit_id: int,
    table: Table,
    items: list[ReadItem],
    *,
    max_count: int,
    max_gap: int,
) -> list[ReadBlock]:
    """Merge ``items`` (one unit, one table) into blocks of at most ``max_count`` registers or
    bits, bridging holes of up to ``max_gap``. Items wider than ``max_count`` are rejected by
    config validation before we get here."""
    blocks: list[ReadBlock] = []
    cur: ReadBlock | None = None
    for it in sorted(items, key=lambda i: (i.start, i.width)):
        end = it.start + it.width - 1
        if cur is not None:
            gap = it.start - cur.end - 1
            new_end = max(cur.end, end)
            if gap <= max_gap and new_end - cur.start + 1 <= max_count:
                cur.count = new_end - cur.start + 1
                cur.items.append(it)
                continue
        cur = ReadBlock(unit_id, table, it.start, it.width, [it])
        blocks.append(cur)
    return blocks
