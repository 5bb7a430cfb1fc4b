"""The NYC sample grown to N distinct rows: rows drawn with replacement, new ids, coordinates
jittered within the cleaning bounds, so no two rows are duplicates and the checks still pass.

    python benchmarks/grow_table.py 1000000 /tmp/nyc_1m.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "nyc_airbnb" / "sample1.csv"
CHUNK = 1_000_000  # rows generated and written at a time: memory stays bounded at 10M rows


def grow(rows: int, dest: Path, seed: int = 0) -> Path:
    sample = pd.read_csv(SAMPLE, low_memory=False)
    rng = np.random.default_rng(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as f:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            part = sample.iloc[rng.integers(0, len(sample), n)].reset_index(drop=True)
            part["id"] = np.arange(start, start + n) + 1
            part["latitude"] = (part["latitude"] + rng.normal(0, 1e-4, n)).clip(40.5, 41.2).round(6)
            part["longitude"] = (part["longitude"] + rng.normal(0, 1e-4, n)).clip(-74.25, -73.5).round(6)
            part.to_csv(f, index=False, header=start == 0)
    return dest


def edit_rows(source: Path, dest: Path, fraction: float, seed: int = 1) -> Path:
    """A copy of a grown table with `fraction` of its rows changed (one more minimum night):
    what an incremental inference run finds new."""
    table = pd.read_csv(source, low_memory=False)
    rows = np.random.default_rng(seed).choice(len(table), int(len(table) * fraction), replace=False)
    table.loc[rows, "minimum_nights"] += 1
    table.to_csv(dest, index=False)
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    print(grow(args.rows, args.dest))
