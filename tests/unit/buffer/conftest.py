import pytest

from tests.unit.buffer.batches import sample_batch


@pytest.fixture
def make_batch():
    return sample_batch
