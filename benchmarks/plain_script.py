"""The baseline: the pipeline's work as one plain process, with no tracking and no artifacts.

Read, clean, split, fit the same model, export it, reload it, score it. Run as a script, so its
process start and imports count the same way a pipeline step's do.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from omegaconf import OmegaConf

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.data.splitting import split
from mlpipe.models.evaluation import regression_metrics
from mlpipe.models.sklearn_model import build_model, export_sklearn
from mlpipe.pipeline.config import load
from mlpipe.project import resolve_path


def main(overrides: list[str]) -> tuple[float, float]:
    """The test MAE and the seconds `fit` took."""
    cfg = load(overrides)
    spec = DatasetSpec.from_dict(OmegaConf.to_container(cfg.dataset, resolve=True))
    raw = pd.read_csv(resolve_path(cfg.dataset.source))
    data = clean(raw, spec, "plain").data
    stratify = cfg.data_split.stratify_by
    trainval, test = split(data, cfg.data_split.test_size, cfg.data_split.random_seed, stratify, "plain")
    train, _ = split(trainval, cfg.train.val_size, cfg.train.random_seed, cfg.train.stratify_by, "plain")
    model = build_model(spec, OmegaConf.to_container(cfg.model, resolve=True))
    started = time.perf_counter()
    model.fit(train, train[spec.target])
    fit_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = export_sklearn(model, spec, train.head(5), trainval[spec.target], Path(tmp) / "model")
        reloaded = mlflow.pyfunc.load_model(str(path))
        mae = regression_metrics(test[spec.target], reloaded.predict(test))["mae"]
    print(f"test mae {mae:.3f}")
    print(f"fit seconds {fit_seconds:.3f}")
    return mae, fit_seconds


if __name__ == "__main__":
    main(sys.argv[1:])
