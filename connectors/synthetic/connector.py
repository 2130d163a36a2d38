"""Synthetic waveform connector: vectorised generation, one chunk per ``chunk_secs``."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from connectors.base import Connector, ConnectorContext
from connectors.synthetic.config import SyntheticConfig, Waveform
from edge_agent.core.chunk import SampleChunk
from edge_agent.signals import DataType, SignalSpec

_WAVE_CODES = {w: i for i, w in enumerate(Waveform)}


class SyntheticConnector(Connector):
    def __init__(self, config: SyntheticConfig, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self._ids: np.ndarray | None = None
        self._emitted = 0
        self._block: SampleChunk | None = None

    async def connect(self) -> None:
        cfg = self.config
        ids, wave, amp, off, per, noise = [], [], [], [], [], []
        for s in cfg.signals:
            ids.append(
                self.ctx.register(
                    SignalSpec(
                        name=s.name,
                        asset=s.asset or cfg.asset,
                        unit=s.unit,
                        dtype=DataType.float64,
                        address=f"synthetic:{s.waveform.value}",
                        connector=cfg.id,
                        semantic_id=s.semantic_id,
                        description=s.description,
                    )
                )
            )
            wave.append(_WAVE_CODES[s.waveform])
            amp.append(s.amplitude)
            off.append(s.offset)
            per.append(s.period_secs)
            noise.append(s.noise)
        if cfg.bulk is not None:
            b = cfg.bulk
            for i in range(b.count):
                asset = f"{cfg.asset}/unit{i % b.assets}" if b.assets > 1 else cfg.asset
                if asset.count("/") >= 5:
                    asset = f"{cfg.asset.rsplit('/', 1)[0]}/unit{i % b.assets}"
                ids.append(
                    self.ctx.register(
                        SignalSpec(
                            name=f"{b.name_prefix}{i}",
                            asset=asset,
                            unit=b.unit,
                            address=f"synthetic:{b.waveform.value}",
                            connector=cfg.id,
                        )
                    )
                )
                wave.append(_WAVE_CODES[b.waveform])
                amp.append(1.0 + (i % 7))
                off.append(float(i % 100))
                per.append(10.0 + (i % 50))
                noise.append(0.01)
        self._ids = np.asarray(ids, dtype=np.int32)
        self._wave = np.asarray(wave)
        self._amp = np.asarray(amp)
        self._off = np.asarray(off)
        self._per = np.asarray(per)
        self._noise = np.asarray(noise)
        self._walk = np.zeros(len(ids))
        self._rng = np.random.default_rng(cfg.seed)
        self._t0_ns = time.time_ns()
        self._step = 0  # sample index on the rate grid

    def _replayed(self, steps: int, now_ns: int) -> SampleChunk:
        """``replay`` mode: the first generated chunk again, timestamps (and counters) advanced."""
        if self._block is None:
            first = self._generate(steps, now_ns)
            self._block = first
            self._is_counter = np.tile(self._wave == _WAVE_CODES[Waveform.counter], steps)
            self._counter_step = np.tile(self._amp, steps)
            return first
        b = self._block
        n_sig = self._ids.shape[0]
        shift = self._step * int(1e9 / self.config.rate_hz)
        value = b.value + np.where(self._is_counter, self._step * self._counter_step, 0.0)
        self._step += steps
        return SampleChunk(b.signal_id, b.source_time_ns + shift, np.full(steps * n_sig, now_ns, dtype=np.int64),
                           value, b.quality)

    def _generate(self, steps: int, now_ns: int) -> SampleChunk:
        """``steps`` samples per signal, vectorised; rows ordered by time then signal."""
        cfg = self.config
        n_sig = self._ids.shape[0]
        period_ns = int(1e9 / cfg.rate_hz)
        k = np.arange(self._step, self._step + steps, dtype=np.int64)
        t_ns = self._t0_ns + k * period_ns  # (steps,)
        t = ((k * period_ns) / 1e9)[:, None]  # seconds since start (steps, 1)
        phase = (t / self._per[None, :]) % 1.0  # (steps, n_sig)
        w = self._wave[None, :]
        vals = np.where(w == _WAVE_CODES[Waveform.sine], np.sin(2 * np.pi * phase), 0.0)
        vals = np.where(w == _WAVE_CODES[Waveform.square], np.where(phase < 0.5, 1.0, -1.0), vals)
        vals = np.where(w == _WAVE_CODES[Waveform.sawtooth], 2.0 * phase - 1.0, vals)
        vals = np.where(w == _WAVE_CODES[Waveform.constant], 1.0, vals)
        vals = np.where(w == _WAVE_CODES[Waveform.counter], (k[:, None] + 1).astype(np.float64), vals)
        if (self._wave == _WAVE_CODES[Waveform.random_walk]).any() or (self._wave == _WAVE_CODES[Waveform.noise]).any():
            steps_rw = self._rng.standard_normal((steps, n_sig))
            walk = self._walk[None, :] + np.cumsum(steps_rw, axis=0)
            self._walk = walk[-1]
            vals = np.where(w == _WAVE_CODES[Waveform.random_walk], walk, vals)
            vals = np.where(w == _WAVE_CODES[Waveform.noise], steps_rw, vals)
        vals = vals * self._amp[None, :] + self._off[None, :]
        if self._noise.any():
            vals = vals + self._rng.standard_normal(vals.shape) * self._noise[None, :]
        self._step += steps
        n = steps * n_sig
        return SampleChunk(
            signal_id=np.tile(self._ids, steps),
            source_time_ns=np.repeat(t_ns, n_sig),
            receive_time_ns=np.full(n, now_ns, dtype=np.int64),
            value=vals.reshape(-1),
            quality=np.zeros(n, dtype=np.uint32),
        )

    async def run(self) -> None:
        cfg = self.config
        steps = max(1, int(round(cfg.rate_hz * cfg.chunk_secs)))
        start = self.ctx.clock()
        while True:
            if cfg.max_rows is not None and self._emitted >= cfg.max_rows:
                await asyncio.Event().wait()  # done: idle until cancelled
            if not cfg.max_speed:
                # real time: emit once the data's time has come
                due = start + (self._step + steps) / cfg.rate_hz
                delay = due - self.ctx.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            chunk = (self._replayed if cfg.replay else self._generate)(steps, time.time_ns())
            if cfg.max_rows is not None and self._emitted + len(chunk) > cfg.max_rows:
                keep = cfg.max_rows - self._emitted
                chunk = SampleChunk(
                    chunk.signal_id[:keep], chunk.source_time_ns[:keep], chunk.receive_time_ns[:keep],
                    chunk.value[:keep], chunk.quality[:keep],
                )
            self._emitted += len(chunk)
            await self.ctx.emit(chunk)
            if cfg.max_speed:
                await asyncio.sleep(0)  # let the core run


def build(config: SyntheticConfig, ctx: ConnectorContext) -> list[Connector]:
    return [SyntheticConnector(config, ctx)]
