import asyncio

import numpy as np
import pytest

from edge_agent.core.channel import BoundedChannel, ChannelClosed, WhenFull
from edge_agent.core.chunk import SampleChunk


def chunk(n: int, start: int = 0) -> SampleChunk:
    return SampleChunk.from_values(np.arange(n), np.arange(start, start + n, dtype=float))


def test_drop_newest_counts_and_keeps_old():
    drops = []
    ch = BoundedChannel(2, 100, WhenFull.drop_newest, on_drop=lambda n, r: drops.append((n, r)))
    assert ch.send_nowait(chunk(3, 0))
    assert ch.send_nowait(chunk(3, 10))
    assert not ch.send_nowait(chunk(4, 20))
    assert drops == [(4, "channel_full")]
    assert ch.recv_nowait().value[0] == 0
    assert ch.recv_nowait().value[0] == 10


def test_drop_oldest_evicts_oldest_first_and_counts():
    drops = []
    ch = BoundedChannel(10, 6, WhenFull.drop_oldest, on_drop=lambda n, r: drops.append(n))
    ch.send_nowait(chunk(3, 0))
    ch.send_nowait(chunk(3, 10))
    ch.send_nowait(chunk(2, 20))  # needs room for 2 rows: evicts the first chunk
    assert drops == [3]
    assert [ch.recv_nowait().value[0] for _ in range(2)] == [10, 20]
    assert ch.rows == 0


def test_oversized_chunk_passes_when_empty():
    ch = BoundedChannel(1, 5, WhenFull.drop_newest)
    assert ch.send_nowait(chunk(50))
    assert ch.rows == 50


async def test_block_waits_for_room():
    ch = BoundedChannel(1, 100, WhenFull.block)
    await ch.send(chunk(1, 0))
    sender = asyncio.create_task(ch.send(chunk(1, 1)))
    await asyncio.sleep(0.05)
    assert not sender.done()  # back-pressure: no room
    got = await ch.recv()
    assert got.value[0] == 0
    await asyncio.wait_for(sender, 1)
    assert (await ch.recv()).value[0] == 1


async def test_close_drains_then_raises():
    ch = BoundedChannel(4, 100)
    await ch.send(chunk(2))
    ch.close()
    assert len(await ch.recv()) == 2
    with pytest.raises(ChannelClosed):
        await ch.recv()
    with pytest.raises(ChannelClosed):
        ch.send_nowait(chunk(1))


async def test_recv_timeout_returns_none():
    ch = BoundedChannel(4, 100)
    assert await ch.recv(timeout=0.01) is None
