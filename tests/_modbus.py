"""Shared by the Modbus case runners (our pymodbus server and the independent modbus-serial one)."""

from __future__ import annotations

from connectors.base import ConnectorContext
from edge_agent.core.channel import BoundedChannel


async def poll_once_by_name(unit, ctx: ConnectorContext, ch: BoundedChannel) -> dict[str, tuple]:
    """Connect, poll one cycle, close; return {signal name: (value, text, quality, valid)}."""
    await unit.connect()
    try:
        await unit.poll()
    finally:
        await unit.aclose()
    got = {}
    while len(ch):
        c = await ch.recv()
        for i in range(len(c)):
            got[ctx.catalog.get(int(c.signal_id[i])).spec.name] = (
                float(c.value[i]),
                c.text[i] if c.text is not None else None,
                int(c.quality[i]),
                True if c.valid is None else bool(c.valid[i]),
            )
    return got
