"""Config of the ``synthetic`` connector: waveforms per signal at a given rate."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.base import AssetPath, ConnectorConfigBase, SignalConfigBase, StrictModel


class Waveform(str, Enum):
    sine = "sine"
    square = "square"
    sawtooth = "sawtooth"
    random_walk = "random_walk"
    noise = "noise"
    constant = "constant"
    counter = "counter"


class SyntheticSignal(SignalConfigBase):
    waveform: Waveform = Field(Waveform.sine, description="Shape of the signal")
    amplitude: float = Field(1.0, description="Peak amplitude (or step size for random_walk / counter)")
    offset: float = Field(0.0, description="Added to every value")
    period_secs: float = Field(60.0, gt=0, description="Period of periodic waveforms")
    noise: float = Field(0.0, ge=0, description="Standard deviation of added Gaussian noise")


class BulkSignals(StrictModel):
    """Generate many signals without listing them (benchmarks, soak tests)."""

    count: int = Field(ge=1, le=1_000_000, description="Number of signals")
    assets: int = Field(1, ge=1, le=10_000, description="Spread the signals over this many assets (<asset>/unit<k>)")
    name_prefix: str = Field("sig", pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="Signals are named <prefix><n>")
    waveform: Waveform = Waveform.sine
    unit: str | None = None


class SyntheticConfig(ConnectorConfigBase):
    """Synthetic waveforms: used by the demo before the simulators and by the core benchmark."""

    type: Literal["synthetic"]
    asset: AssetPath = Field("demo/area/line1/synthetic", description="Default asset path")
    rate_hz: float = Field(10.0, gt=0, le=100_000, description="Samples per second per signal")
    chunk_secs: float = Field(0.1, gt=0, le=60, description="Emit one chunk per this many seconds of data")
    max_speed: bool = Field(
        False,
        description="Generate as fast as the core accepts, with simulated timestamps (benchmarks); otherwise real time",
    )
    max_rows: int | None = Field(None, ge=1, description="Stop after emitting this many rows (benchmarks, tests)")
    replay: bool = Field(
        False,
        description="Generate one chunk of values and re-emit it with advancing timestamps (counters keep counting): "
        "a source that costs almost nothing, for measuring the core (bench/core_throughput.py)",
    )
    seed: int = Field(0, description="Random seed (noise and random walks)")
    signals: list[SyntheticSignal] = Field(default_factory=list, description="Signals listed one by one")
    bulk: BulkSignals | None = Field(None, description="Many generated signals")

    @model_validator(mode="after")
    def _some_signals(self) -> SyntheticConfig:
        if not self.signals and self.bulk is None:
            raise ValueError("declare 'signals' or 'bulk'")
        return self
