"""Model-based test: both buffers against a plain list model (after Vector's buffer model tests).

The model is a list of stored batches (oldest first) plus the set of open transactions; every
operation's result, the drop counts and the totals are compared after each step. Sizes come from
each implementation's ``size_of`` so the byte limit and all three ``when_full`` policies are
exercised with real encodings.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edge_agent.buffer.memory import MemoryBuffer
from edge_agent.buffer.sqlite import SqliteBuffer
from edge_agent.core.channel import WhenFull
from edge_agent.errors import BufferFull
from tests.unit.buffer.batches import sample_batch


@dataclass
class Stored:
    seq: int
    rows: int
    nbytes: int
    seed: int


class BufferModel(RuleBasedStateMachine):
    durable = False

    def __init__(self):
        super().__init__()
        self.stored: list[Stored] = []
        self.open_txs: list = []
        self.dropped: list[tuple[int, str]] = []
        self.model_dropped = 0
        self.last_seq = 0
        self.seeds = 0
        self.tmp = tempfile.mkdtemp(prefix="axedge-buffer-model-") if self.durable else None

    def open(self):
        on_drop = lambda rows, reason: self.dropped.append((rows, reason))  # noqa: E731
        if self.durable:
            return SqliteBuffer(Path(self.tmp) / "b.sqlite", self.max_bytes, self.when_full, fsync="off", on_drop=on_drop)
        return MemoryBuffer(self.max_bytes, self.when_full, on_drop=on_drop)

    @initialize(policy=st.sampled_from(list(WhenFull)), limit_batches=st.integers(1, 8))
    def setup(self, policy, limit_batches):
        self.when_full = policy
        cls = SqliteBuffer if self.durable else MemoryBuffer
        self.size_of = cls.size_of
        self.max_bytes = limit_batches * cls.size_of(sample_batch(10, 0))
        self.buf = self.open()
        self.buffer_id = self.buf.buffer_id

    def teardown(self):
        if hasattr(self, "buf"):
            self.buf.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def inflight(self) -> set[int]:
        return {s for tx in self.open_txs for s in tx.seqs}

    def waiting(self) -> list[Stored]:
        busy = self.inflight()
        return [s for s in self.stored if s.seq not in busy]

    @rule(rows=st.integers(1, 25))
    def put(self, rows):
        self.seeds += 1
        seed = self.seeds
        batch = sample_batch(rows, seed)
        size = self.size_of(batch)
        total = sum(s.nbytes for s in self.stored)
        evict: list[Stored] = []
        expect = "store"
        if self.stored and total + size > self.max_bytes:
            if self.when_full is WhenFull.block:
                expect = "full"
            elif self.when_full is WhenFull.drop_newest:
                expect = "drop"
            else:
                kept = list(self.stored)
                for s in self.waiting():
                    evict.append(s)
                    kept.remove(s)
                    if not kept or sum(k.nbytes for k in kept) + size <= self.max_bytes:
                        break
                else:
                    expect = "full"
        if expect == "full":
            with pytest.raises(BufferFull, match="max_bytes"):
                self.buf.put(batch)
            return
        seq = self.buf.put(batch)
        if expect == "drop":
            assert seq is None
            self.model_dropped += rows
            return
        assert seq is not None and seq > self.last_seq
        self.last_seq = seq
        for s in evict:
            self.stored.remove(s)
            self.model_dropped += s.rows
        self.stored.append(Stored(seq, rows, size, seed))

    @rule(max_rows=st.integers(1, 60))
    def begin(self, max_rows):
        waiting = self.waiting()
        tx = self.buf.begin(max_rows)
        if not waiting:
            assert tx is None
            return
        expect = [waiting[0]]
        for s in waiting[1:]:
            if sum(e.rows for e in expect) + s.rows > max_rows:
                break
            expect.append(s)
        assert tx.seqs == [s.seq for s in expect]
        assert tx.rows == sum(s.rows for s in expect)
        assert tx.nbytes == sum(s.nbytes for s in expect)
        for s, batch in zip(expect, tx.batches, strict=True):
            assert batch.equals(sample_batch(s.rows, s.seed), check_metadata=True)
        self.open_txs.append(tx)

    @precondition(lambda self: self.open_txs)
    @rule(pick=st.integers(0, 100), accept=st.booleans())
    def end(self, pick, accept):
        tx = self.open_txs.pop(pick % len(self.open_txs))
        self.buf.end(tx, accept)
        assert tx.done
        if accept:
            self.stored = [s for s in self.stored if s.seq not in tx.seqs]

    @rule(back=st.integers(-1, 6), own=st.booleans())
    def ack_through(self, back, own):
        through = self.last_seq - back
        bid = self.buffer_id if own else "0" * 32
        gone = [s for s in self.stored if s.seq <= through] if own else []
        assert self.buf.ack_through(bid, through) == sum(s.rows for s in gone)
        self.stored = [s for s in self.stored if s not in gone]

    @invariant()
    def totals(self):
        if not hasattr(self, "buf"):
            return
        assert self.buf.rows == sum(s.rows for s in self.stored)
        assert self.buf.nbytes == sum(s.nbytes for s in self.stored)
        assert self.buf.batches == len(self.stored)
        assert all(r == "buffer_full" for _, r in self.dropped)
        assert sum(r for r, _ in self.dropped) == self.model_dropped


class SqliteBufferModel(BufferModel):
    durable = True

    @rule()
    def reopen(self):
        self.buf.close()
        self.open_txs.clear()  # in flight is memory only: everything stored is waiting again
        self.buf = self.open()
        assert self.buf.buffer_id == self.buffer_id


_settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestMemoryBufferModel = BufferModel.TestCase
TestMemoryBufferModel.settings = _settings
TestSqliteBufferModel = SqliteBufferModel.TestCase
TestSqliteBufferModel.settings = _settings
