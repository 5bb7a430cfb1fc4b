"""A plain batch prediction: the prod model loaded through pyfunc, `predict` on every row of a
CSV, the predictions written as Parquet. No ledger, no tracking.

    python benchmarks/plain_predict.py <table.csv> "<hydra overrides>"
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from mlpipe.pipeline.config import load


def main(source: Path, overrides: list[str]) -> None:
    cfg = load(overrides)
    model = mlflow.pyfunc.load_model(f"models:/{cfg.inference.model_name}@prod")
    rows = pd.read_csv(source, low_memory=False)
    predictions = pd.DataFrame({"prediction": model.predict(rows)})
    with tempfile.TemporaryDirectory() as tmp:
        predictions.to_parquet(Path(tmp) / "predictions.parquet", index=False)
    print(f"rows {len(predictions)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split())
