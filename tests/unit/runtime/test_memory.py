"""Process memory settings: libarrow's default pool is chosen from the environment when pyarrow
loads, so it must be set before; a pool the user chose is kept. Each case runs in a fresh
interpreter (this one has pyarrow loaded already)."""

import os
import subprocess
import sys

import pytest

PROBE = """
import os
from edge_agent.runtime.memory import prefer_system_allocator, arrow_pool_name
{before}
took = prefer_system_allocator()
print(took, arrow_pool_name(), os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "-"))
"""


def _probe(before: str = "", env: dict | None = None) -> list[str]:
    e = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                       env=e, timeout=60, check=True)
    return r.stdout.split()


def test_system_allocator_is_chosen_before_pyarrow_loads():
    assert _probe() == ["True", "system", "system"]


def test_too_late_once_pyarrow_is_loaded():
    took, _pool, env = _probe("import pyarrow")  # the pool stays the wheel's default, whatever it is
    assert (took, env) == ("False", "-")


@pytest.mark.parametrize("pool", ["mimalloc", "jemalloc"])
def test_a_pool_the_user_chose_wins(pool):
    import pyarrow as pa

    if pool not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {pool}")
    assert _probe(env={"ARROW_DEFAULT_MEMORY_POOL": pool}) == ["False", pool, pool]
