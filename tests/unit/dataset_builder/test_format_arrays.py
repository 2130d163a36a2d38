"""The zero-copy array helpers of the dataset format (used on the agent's hot path)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_builder.format import TS_NS_UTC, TS_US_UTC, arrow_from_numpy, null_array


@pytest.mark.parametrize("type_", [TS_NS_UTC, TS_US_UTC, pa.string(), pa.float64(), pa.int32(), pa.bool_()])
@pytest.mark.parametrize("n", [0, 1, 7, 100_003])
def test_null_array_is_all_null_and_equal_to_pa_nulls(type_, n):
    a = null_array(n, type_)
    a.validate(full=True)
    assert a.type == type_ and len(a) == n and a.null_count == n
    assert a.equals(pa.nulls(n, type_))


def test_null_arrays_share_one_buffer_and_survive_a_parquet_round_trip(tmp_path):
    a, b = null_array(50_000, TS_US_UTC), null_array(40_000, TS_US_UTC)
    assert a.buffers()[1].address == b.buffers()[1].address  # no allocation per array
    t = pa.table({"t": pa.chunked_array([a, b]), "s": null_array(90_000, pa.string())})
    pq.write_table(t, tmp_path / "n.parquet")
    back = pq.read_table(tmp_path / "n.parquet")
    assert back.column("t").null_count == 90_000 and back.column("s").null_count == 90_000


def test_arrow_from_numpy_is_zero_copy_and_masks():
    v = np.arange(10, dtype=np.float64)
    a = arrow_from_numpy(v, pa.float64())
    assert a.buffers()[1].address == v.ctypes.data
    m = arrow_from_numpy(v, pa.float64(), valid=v % 2 == 0)
    assert m.null_count == 5 and m.to_pylist()[:3] == [0.0, None, 2.0]
