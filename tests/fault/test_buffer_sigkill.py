"""SIGKILL a process that writes to (and drains) the SQLite buffer at random moments: every batch
whose ``put`` had returned is there after a restart, intact, oldest first; nothing appears that was
not being written; a batch whose ``end(accept)`` had returned never comes back."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.buffer.sqlite import SqliteBuffer
from edge_agent.core.channel import WhenFull
from tests.unit.buffer.batches import sample_batch

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from pathlib import Path
from edge_agent.buffer.sqlite import SqliteBuffer
from tests.unit.buffer.batches import sample_batch

path, start = Path(sys.argv[1]), int(sys.argv[2])
buf = SqliteBuffer(path, 10**10, "block", fsync="normal")
sample_batch(1, 0)  # the first call pays for lazy pyarrow/numpy set-up; kills should land in puts
print("ready", flush=True)
i = start
while True:
    seq = buf.put(sample_batch(1 + i % 300, i))
    print("put", seq, i, flush=True)
    if i % 3 == 2:
        tx = buf.begin(400)
        buf.end(tx, accept=True)
        print("acked", *tx.seqs, flush=True)
    i += 1
"""


def _run_and_kill(path: Path, start: int, delay: float) -> list[list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(start)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    return [line.split() for line in out.splitlines() if line.endswith(tuple("0123456789"))]


def test_buffer_sigkill_loses_no_committed_batch(tmp_path):
    rng = random.Random(os.environ.get("AXEDGE_FAULT_SEED", "buffer-sigkill"))
    path = tmp_path / "raw.sqlite"
    seed_of: dict[int, int] = {}  # seq -> batch seed, for every put that returned
    acked: set[int] = set()
    start = 0
    deadline = time.monotonic() + 15
    runs = 0
    while runs < 10 or (runs < 15 and time.monotonic() < deadline):
        lines = _run_and_kill(path, start, rng.uniform(0.0, 0.4))
        run_puts = {int(s): int(i) for kind, s, i, *_ in (ln for ln in lines if ln[0] == "put")}
        for ln in lines:
            if ln[0] == "acked":
                acked.update(int(s) for s in ln[1:])
        seed_of.update(run_puts)
        start = max(run_puts.values(), default=start - 1) + 1  # the next put the child would have made

        buf = SqliteBuffer(path, 10**10, WhenFull.block, fsync="normal")
        stored: list[tuple[int, object]] = []
        while (tx := buf.begin(10**9)) is not None:
            stored.extend(zip(tx.seqs, tx.batches, strict=True))
        buf.close()  # nothing ended: the store is unchanged for the next run

        seqs = [s for s, _ in stored]
        assert seqs == sorted(seqs)
        expected = set(seed_of) - acked
        missing = expected - set(seqs)
        assert not missing, f"run {runs}: committed batches lost: {sorted(missing)[:10]}"
        assert not acked & set(seqs), f"run {runs}: accepted batches came back"
        extra = [(s, b) for s, b in stored if s not in seed_of]
        assert len(extra) <= 1, f"run {runs}: unexpected batches {[s for s, _ in extra]}"
        for s, batch in extra:  # the batch in the middle of its put when the kill came
            assert batch.equals(sample_batch(1 + start % 300, start))
            seed_of[s] = start
            start += 1
        for s, batch in stored:
            assert batch.equals(sample_batch(1 + seed_of[s] % 300, seed_of[s])), f"seq {s} content differs"
        runs += 1
    assert len(seed_of) > 20, "the child hardly wrote anything; the test proved little"
