"""A plain fit of the pipeline's model on the train step's rows: the trainval Parquet file, the
same validation split, the same `ColumnTransformer` pipeline and estimator. No tracking.

    python benchmarks/plain_fit.py <trainval.parquet> [hydra overrides, e.g. model=hist_gradient_boosting]

Prints `fit seconds` (the `fit` call alone) and `process seconds` (reading, splitting, fitting).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from mlpipe.data.spec import DatasetSpec
from mlpipe.data.splitting import split
from mlpipe.models.sklearn_model import build_model
from mlpipe.pipeline.config import load


def main(trainval_file: Path, overrides: list[str]) -> None:
    started = time.perf_counter()
    cfg = load(overrides)
    spec = DatasetSpec.from_dict(OmegaConf.to_container(cfg.dataset, resolve=True))
    trainval = pd.read_parquet(trainval_file)
    train, _ = split(trainval, cfg.train.val_size, cfg.train.random_seed, cfg.train.stratify_by, "plain")
    model = build_model(spec, OmegaConf.to_container(cfg.model, resolve=True))
    fitting = time.perf_counter()
    model.fit(train, train[spec.target])
    done = time.perf_counter()
    print(f"fit seconds {done - fitting:.3f}")
    print(f"process seconds {done - started:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
