"""Bounded channels with a declared ``when_full`` policy and counted drops.

Every queue in axedge is bounded (CONVENTIONS 4). The channel holds sample chunks and is bounded
by both a chunk count and a row count; when full it applies its policy:

* ``block``: the sender waits (back-pressure reaches the connector, which slows its polling or
  lets its protocol buffer data, e.g. the MQTT broker keeps QoS 1 messages);
* ``drop_newest``: the new chunk is dropped and counted;
* ``drop_oldest``: the oldest queued chunk is dropped and counted, the new one queued.

Dropped rows are reported through ``on_drop(rows, reason)`` so every drop lands in metrics.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import Enum

from edge_agent.core.chunk import SampleChunk


class WhenFull(str, Enum):
    block = "block"
    drop_newest = "drop_newest"
    drop_oldest = "drop_oldest"


class ChannelClosed(Exception):
    """Raised by ``send`` after ``close()`` and by ``recv`` once a closed channel is drained."""


class BoundedChannel:
    def __init__(
        self,
        max_chunks: int,
        max_rows: int,
        when_full: WhenFull = WhenFull.block,
        on_drop: Callable[[int, str], None] | None = None,
    ) -> None:
        if max_chunks < 1 or max_rows < 1:
            raise ValueError("channel limits must be >= 1")
        self.max_chunks = max_chunks
        self.max_rows = max_rows
        self.when_full = WhenFull(when_full)
        self._on_drop = on_drop or (lambda rows, reason: None)
        self._q: deque[SampleChunk] = deque()
        self._rows = 0
        self._closed = False
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()

    @property
    def rows(self) -> int:
        return self._rows

    def __len__(self) -> int:
        return len(self._q)

    def _full_for(self, rows: int) -> bool:
        if not self._q:
            return False  # an oversized chunk still passes when the channel is empty
        return len(self._q) >= self.max_chunks or self._rows + rows > self.max_rows

    def _push(self, chunk: SampleChunk) -> None:
        self._q.append(chunk)
        self._rows += len(chunk)
        self._not_empty.set()
        if self._full_for(0) or len(self._q) >= self.max_chunks:
            self._not_full.clear()

    def send_nowait(self, chunk: SampleChunk) -> bool:
        """Queue ``chunk`` without waiting. Returns False when it was dropped (drop_newest, or
        block policy with a full channel: the caller must then await :meth:`send`)."""
        if self._closed:
            raise ChannelClosed("channel closed")
        n = len(chunk)
        if not self._full_for(n):
            self._push(chunk)
            return True
        if self.when_full is WhenFull.drop_newest:
            self._on_drop(n, "channel_full")
            return False
        if self.when_full is WhenFull.drop_oldest:
            while self._q and self._full_for(n):
                old = self._q.popleft()
                self._rows -= len(old)
                self._on_drop(len(old), "channel_full")
            self._push(chunk)
            return True
        return False

    async def send(self, chunk: SampleChunk) -> bool:
        """Queue ``chunk``, applying the policy. With ``block`` this waits for room."""
        while True:
            if self.send_nowait(chunk):
                return True
            if self.when_full is not WhenFull.block:
                return False
            self._not_full.clear()
            await self._not_full.wait()
            if self._closed:
                raise ChannelClosed("channel closed")

    def recv_nowait(self) -> SampleChunk | None:
        if not self._q:
            return None
        chunk = self._q.popleft()
        self._rows -= len(chunk)
        if not self._q:
            self._not_empty.clear()
        self._not_full.set()
        return chunk

    async def recv(self, timeout: float | None = None) -> SampleChunk | None:
        """Next chunk; ``None`` on timeout. Raises :class:`ChannelClosed` when closed and drained."""
        while not self._q:
            if self._closed:
                raise ChannelClosed("channel closed")
            if timeout is None:
                await self._not_empty.wait()
            else:
                try:
                    await asyncio.wait_for(self._not_empty.wait(), timeout)
                except TimeoutError:
                    return None
        return self.recv_nowait()

    def close(self) -> None:
        """No more sends; receivers drain what is queued, then get :class:`ChannelClosed`."""
        self._closed = True
        self._not_empty.set()
        self._not_full.set()

    @property
    def closed(self) -> bool:
        return self._closed
