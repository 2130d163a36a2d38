"""pyarrow's ``pa.array``, ``Array.to_numpy`` and ``pc.fill_null`` with a Python scalar import
pandas when it is installed: 44 MB more RSS in the agent (measured with every connector loaded)
and ~0.5 s at the first call. Every part of the agent's hot path avoids them; this runs each one
in a fresh interpreter (this one has pandas loaded) and checks pandas stays out."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import numpy as np
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from edge_agent.signals import SignalCatalog, SignalSpec
from edge_agent.sinks.mqtt_uplink import row_columns
from edge_agent.web.tap import LastValues
from models.bundle import load
from models.runtime import EdgeScorer, _columns
assert "pandas" not in sys.modules, "pandas came in at import"

model = {model!r}
catalog = SignalCatalog()
keys = load(model).signals
ids = [catalog.register(SignalSpec(name=k.rsplit("/", 1)[1], asset=k.rsplit("/", 1)[0])) for k in keys]
text_id = catalog.register(SignalSpec(name="recipe", asset="demo-plant/foundry/casting-line-1/pourer"))

scorer = EdgeScorer(model, catalog, max_queue_batches=10_000)
scorer.start()
t0 = __import__("time").time_ns() - 60 * 200_000_000
period = 200_000_000
for step in range(0, 60, 10):  # 60 periods of every input, in batches of 10 periods
    steps = np.arange(step, step + 10)
    sid = np.tile(np.array(ids), len(steps))
    t = np.repeat(t0 + steps * period, len(ids))
    values = np.sin(t / 1e10) + sid
    chunk = SampleChunk.from_values(sid, values, source_time_ns=t)
    chunk.valid = (np.arange(len(sid)) % 17 != 0) | (step > 0)  # some nulls in the first batch
    texts = SampleChunk.from_values(np.full(2, text_id), np.zeros(2), source_time_ns=t[:2])
    texts.text = ["A-17", None]
    batch = chunks_to_batch([chunk, texts])
    LastValues().update(batch)
    cols = row_columns(batch)
    assert len(cols[0]) == batch.num_rows and cols[3][-2:] == ["A-17", None]
    sid2, t2, v2 = _columns(batch)
    assert np.isnan(v2).sum() >= (~chunk.valid).sum()
    scorer.process(batch)
assert scorer.wait_idle(30)
scores = scorer.drain_scores()
scorer.close()
assert scores.num_rows > 0, f"no scores: {{scorer.stats}}"
assert scores.column("model").to_pylist()[0] and scores.column("anomaly").type == "bool"
assert "pandas" not in sys.modules, "pandas was imported"
print("ok", scores.num_rows)
"""


def test_agent_hot_path_does_not_import_pandas():
    model = ROOT / "edge_agent" / "demo" / "models" / "casting"
    r = subprocess.run([sys.executable, "-c", CODE.format(model=str(model))], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok ")
