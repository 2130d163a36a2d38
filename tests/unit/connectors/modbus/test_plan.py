"""The read planner merges signals into few requests within the per-request limits."""

from hypothesis import given
from hypothesis import strategies as st

from connectors.modbus.config import Table
from connectors.modbus.plan import ReadItem, plan_blocks


def spans(blocks):
    return [(b.start, b.count, [i.key for i in b.items]) for b in blocks]


def test_adjacent_and_small_gaps_merge_big_gaps_split():
    items = [ReadItem(0, 0, 2), ReadItem(1, 2, 1), ReadItem(2, 10, 2), ReadItem(3, 40, 4)]
    assert spans(plan_blocks(1, Table.holding, items, max_count=125, max_gap=7)) == [
        (0, 12, [0, 1, 2]),
        (40, 4, [3]),
    ]
    assert spans(plan_blocks(1, Table.holding, items, max_count=125, max_gap=0)) == [
        (0, 3, [0, 1]),
        (10, 2, [2]),
        (40, 4, [3]),
    ]


def test_block_never_exceeds_max_count_and_never_splits_a_value():
    items = [ReadItem(i, 2 * i, 2) for i in range(100)]  # 100 float32 back to back
    blocks = plan_blocks(1, Table.holding, items, max_count=125, max_gap=0)
    assert [b.count for b in blocks] == [124, 76]
    blocks = plan_blocks(1, Table.holding, items, max_count=3, max_gap=10)
    assert all(b.count == 2 for b in blocks) and len(blocks) == 100


def test_bits_use_the_bit_limit():
    items = [ReadItem(i, i, 1) for i in range(0, 5000, 2)]
    blocks = plan_blocks(1, Table.coil, items, max_count=2000, max_gap=1)
    assert [b.count for b in blocks] == [1999, 1999, 999]


def test_bits_sharing_a_register_go_into_one_block():
    items = [ReadItem(0, 7, 1), ReadItem(1, 7, 1), ReadItem(2, 8, 1)]
    (b,) = plan_blocks(1, Table.holding, items, max_count=125, max_gap=0)
    assert (b.start, b.count, len(b.items)) == (7, 2, 3)


@given(
    st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 4)), min_size=1, max_size=60, unique_by=lambda t: t[0]),
    st.integers(4, 125),
    st.integers(0, 30),
)
def test_every_item_is_covered_by_exactly_one_block_within_limits(raw, max_count, max_gap):
    items = [ReadItem(k, a, w) for k, (a, w) in enumerate(raw)]
    blocks = plan_blocks(1, Table.holding, items, max_count=max_count, max_gap=max_gap)
    seen = sorted(i.key for b in blocks for i in b.items)
    assert seen == list(range(len(items)))
    for b in blocks:
        assert b.count <= max_count
        for it in b.items:
            assert b.start <= it.start and it.start + it.width - 1 <= b.end
    # blocks come out in address order
    for a, b in zip(blocks, blocks[1:]):
        assert a.start < b.start
