import numpy as np
import pyarrow as pa

from dataset_builder.format import SAMPLE_SCHEMA, Quality
from edge_agent.core.batcher import Batcher, BatchPolicy
from edge_agent.core.chunk import SampleChunk, chunks_to_batch


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def chunk(n, v=1.0):
    return SampleChunk.from_values(np.arange(n), np.full(n, v), source_time_ns=1_700_000_000_000_000_000)


def test_flush_on_rows():
    b = Batcher(BatchPolicy(max_rows=10, max_bytes=1 << 30, max_age_secs=60), clock=FakeClock())
    assert not b.add(chunk(6))
    assert b.add(chunk(6))
    f = b.flush()
    assert f.reason == "rows" and f.batch.num_rows == 12
    assert b.flush() is None


def test_flush_on_bytes():
    b = Batcher(BatchPolicy(max_rows=10**9, max_bytes=100, max_age_secs=60), clock=FakeClock())
    assert b.add(chunk(10))  # 10 rows * 32 bytes > 100
    assert b.flush().reason == "bytes"


def test_flush_on_age_with_injected_clock():
    clock = FakeClock()
    b = Batcher(BatchPolicy(max_rows=1000, max_bytes=1 << 30, max_age_secs=2.0), clock=clock)
    assert b.until_next() is None
    b.add(chunk(1))
    assert b.until_next() == 2.0
    clock.t += 1.5
    assert b.due() is None
    assert abs(b.until_next() - 0.5) < 1e-9
    clock.t += 0.5
    assert b.due() == "age"
    assert b.flush().reason == "age"
    assert b.until_next() is None


def test_callbacks_are_collected_in_order():
    b = Batcher(BatchPolicy(), clock=FakeClock())
    seen = []
    for i in range(3):
        c = chunk(1)
        c.on_durable = lambda i=i: seen.append(i)
        b.add(c)
    f = b.flush("shutdown")
    for cb in f.callbacks:
        cb()
    assert seen == [0, 1, 2] and f.reason == "shutdown"


def test_chunks_to_batch_schema_gaps_text_and_server_time():
    a = chunk(2, 5.0)
    g = SampleChunk.gap([7], Quality.BAD_NO_COMMUNICATION, at_ns=1_700_000_000_000_000_000)
    t = chunk(1)
    t.text = ["RUNNING"]
    t.server_time_ns = np.array([1_700_000_000_000_000_123])
    batch = chunks_to_batch([a, g, t])
    assert batch.schema.equals(SAMPLE_SCHEMA)
    assert batch.column("value").to_pylist() == [5.0, 5.0, None, 1.0]
    assert batch.column("value_text").to_pylist() == [None, None, None, "RUNNING"]
    assert batch.column("quality").to_pylist() == [0, 0, int(Quality.BAD_NO_COMMUNICATION), 0]
    st = batch.column("server_time").cast(pa.int64()).to_pylist()
    assert st == [None, None, None, 1_700_000_000_000_000_123]
