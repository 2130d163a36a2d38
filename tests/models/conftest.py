from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def tep_frame(name: str, rows: slice | None = None) -> pd.DataFrame:
    """A Tennessee Eastman run as a wide frame with a 3-minute time column."""
    path = DATA / "tep" / f"{name}.dat"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    a = np.loadtxt(path)
    if name == "d00":  # stored transposed (52 x 500)
        a = a.T
    if rows is not None:
        a = a[rows]
    df = pd.DataFrame(a, columns=[f"xmeas_{i + 1}" if i < 41 else f"xmv_{i - 40}" for i in range(52)])
    df.insert(0, "time", pd.date_range("2024-01-01", periods=len(df), freq="3min", tz="UTC"))
    return df


@pytest.fixture(scope="session")
def tep_train() -> pd.DataFrame:
    return tep_frame("d00")


@pytest.fixture(scope="session")
def tep_bundle(tep_train):
    import models

    return models.train(tep_train, kind="pca", window=3)
