"""SIGKILL a process that writes to (and drains) the SQLite buffer at random moments: every batch
whose ``put`` had returned is there after a restart, intact, oldest first; nothing appears that was
not being written; a batch whose ``end(accept)`` had returned never comes back."""

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from edge_agent.buffer.sqlite import SqliteBuffer
from edge_agent.core.channel import WhenFull
from tests.unit.buffer.batches import put_forever, sample_batch


def _writers():
    """Writers are forked from a forkserver: real, single-threaded processes that start in
    milliseconds (no interpreter start-up per run, no fork of the multi-threaded test process)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["edge_agent.buffer.sqlite", "tests.unit.buffer.batches"])
    return ctx


def _run_and_kill(ctx, path: Path, log: Path, start: int, delay: float) -> list[list[str]]:
    """Start a writer, SIGKILL it ``delay`` seconds after it opened the store, return its lines."""
    log.write_text("")
    proc = ctx.Process(target=put_forever, args=(str(path), start, str(log)), daemon=True)
    proc.start()
    limit = time.monotonic() + 60
    while not log.read_text().startswith("ready\n"):
        assert proc.is_alive(), f"writer exited early with code {proc.exitcode}"
        assert time.monotonic() < limit, "writer did not start"
        time.sleep(0.005)
    time.sleep(delay)
    proc.kill()
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    return [line.split() for line in log.read_text().splitlines()[1:]]


def test_buffer_sigkill_loses_no_committed_batch(tmp_path):
    rng = random.Random(os.environ.get("AXEDGE_FAULT_SEED", "buffer-sigkill"))
    path = tmp_path / "raw.sqlite"
    seed_of: dict[int, int] = {}  # seq -> batch seed, for every put that returned
    acked: set[int] = set()
    start = 0
    ctx = _writers()
    deadline = time.monotonic() + 10
    runs = 0
    while runs < 10 or (runs < 30 and time.monotonic() < deadline):
        lines = _run_and_kill(ctx, path, tmp_path / f"run{runs}.log", start, rng.uniform(0.0, 0.3))
        run_puts = {int(s): int(i) for kind, s, i, *_ in (ln for ln in lines if ln[0] == "put")}
        for ln in lines:
            if ln[0] == "acked":
                acked.update(int(s) for s in ln[1:])
        # a kill between the commit of end(accept) and its "acked" line: those may be gone
        maybe_acked = {int(s) for s in lines[-1][1:]} if lines and lines[-1][0] == "acking" else set()
        seed_of.update(run_puts)
        start = max(run_puts.values(), default=start - 1) + 1  # the next put the child would have made

        buf = SqliteBuffer(path, 10**10, WhenFull.block, fsync="normal")
        stored: list[tuple[int, object]] = []
        while (tx := buf.begin(10**9)) is not None:
            stored.extend(zip(tx.seqs, tx.batches, strict=True))
        buf.close()  # nothing ended: the store is unchanged for the next run

        seqs = [s for s, _ in stored]
        assert maybe_acked <= set(seqs) or not maybe_acked & set(seqs), "end(accept) was not atomic"
        acked.update(maybe_acked - set(seqs))
        assert seqs == sorted(seqs)
        expected = set(seed_of) - acked
        missing = expected - set(seqs) - maybe_acked
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
