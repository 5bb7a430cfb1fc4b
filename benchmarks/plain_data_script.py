"""The data steps' work as one plain script: read the CSV, drop out-of-bounds rows and
duplicates, the category and KS checks on a sample, a stratified split, two Parquet files.
No tracking, no artifacts; the same library functions the steps call.

    python benchmarks/plain_data_script.py <table.csv> <output folder> [hydra overrides]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from mlpipe.data import drift
from mlpipe.data.drift import DriftThresholds
from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.data.splitting import split
from mlpipe.pipeline.config import load


def main(source: Path, out: Path, overrides: list[str]) -> None:
    cfg = load(overrides)
    spec = DatasetSpec.from_dict(OmegaConf.to_container(cfg.dataset, resolve=True))
    data = clean(pd.read_csv(source, low_memory=False), spec, "plain").data
    limits = DriftThresholds(
        cfg.data_check.kl_threshold, cfg.data_check.ks_alpha, cfg.data_check.ks_sample_size
    )
    sample = data.sample(n=min(len(data), 20_000), random_state=0)
    drift.category_drift(sample, data, list(spec.checks.get("drift_columns") or []), limits)
    drift.numeric_drift(sample, data, list(spec.checks.get("ks_columns") or []), limits)
    cut = cfg.data_split
    trainval, test = split(data, cut.test_size, cut.random_seed, cut.stratify_by, "plain")
    out.mkdir(parents=True, exist_ok=True)
    trainval.to_parquet(out / "trainval.parquet", index=False)
    test.to_parquet(out / "test.parquet", index=False)
    print(f"rows {len(data)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
