"""The one scoring path: an exported model, loaded through its pyfunc flavor as serving loads it,
scores a kind's data. test_model, promote and the steps built on them score through here, and the
training steps compute their validation metrics with the same `metrics`, so any metric test_model
logs can gate a promotion and the sweep objective means what the test step measures."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpipe.data.spec import DatasetSpec

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel


@dataclass(frozen=True)
class Prediction:
    values: np.ndarray  # the predicted value (regression) or class of each row
    probabilities: np.ndarray | None = None  # (rows, classes), for classifiers that give them
    classes: list[Any] | None = None  # the column order of `probabilities`


def load(model: str | Path) -> PyFuncModel:
    """A model export as serving loads it: a local folder, or a `runs:/` or `models:/` URI."""
    import mlflow.artifacts

    folder = Path(model)
    if folder.is_dir():
        return _load_folder(folder)
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        return _load_folder(Path(mlflow.artifacts.download_artifacts(str(model), dst_path=tmp)))


def _load_folder(folder: Path) -> PyFuncModel:
    import mlflow.pyfunc
    from mlflow.models import Model

    if "pytorch" in Model.load(str(folder / "MLmodel")).flavors:
        from mlpipe.models.torch_export import load_pyfunc

        return load_pyfunc(folder)  # a TorchScript export needs MLflow's pickle permission
    return mlflow.pyfunc.load_model(str(folder))


def predict(model: PyFuncModel, data: Any, spec: DatasetSpec) -> Prediction:
    """Score `data` (as its kind holds it); a classifier's class probabilities come with it."""
    inputs = spec.kind.model_input(data, spec)
    metadata = model.metadata.metadata or {}
    classes = metadata.get("classes")
    if spec.task == "classification" and metadata.get("output") == "probabilities":
        probabilities = np.asarray(model.predict(inputs), dtype=float)
        return Prediction(np.asarray(classes)[probabilities.argmax(axis=1)], probabilities, list(classes))
    values = np.asarray(model.predict(inputs)).ravel()
    if spec.task == "classification" and classes:
        probabilities = np.asarray(
            model.predict(inputs, params={"predict_method": "predict_proba"}), dtype=float
        )
        return Prediction(values, probabilities, list(classes))
    return Prediction(values)


def metrics(spec: DatasetSpec, actual: Any, prediction: Prediction) -> dict[str, float]:
    """MAE, RMSE and R2 for a regression; accuracy, macro F1 and (with probabilities) ROC AUC for
    a classification."""
    from mlpipe.models import evaluation

    if spec.task == "regression":
        return evaluation.regression_metrics(actual, prediction.values)
    return evaluation.classification_metrics(
        actual, prediction.values, prediction.probabilities, prediction.classes
    )


def evaluate(model: PyFuncModel, data: Any, spec: DatasetSpec) -> tuple[Prediction, dict[str, float]]:
    prediction = predict(model, data, spec)
    return prediction, metrics(spec, spec.kind.target(data, spec), prediction)


def latency(model: PyFuncModel, data: Any, spec: DatasetSpec, repeats: int = 20) -> dict[str, float]:
    """How long the model takes to predict, through pyfunc as serving calls it: one row (the
    median of `repeats` calls, after a warm-up) and all of `data` in one call, per row."""
    inputs = spec.kind.model_input(data, spec)
    one = inputs[:1]
    model.predict(one)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(one)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    model.predict(inputs)
    batch = time.perf_counter() - started
    return {"latency_ms": 1000 * statistics.median(times), "batch_ms_per_row": 1000 * batch / len(inputs)}


def check_in_fresh_process(folder: Path, data: Any, spec: DatasetSpec, prediction: Prediction) -> dict | None:
    """Load the export with its framework alone (no MLflow, no project) in a new Python process
    and score `data` again: the largest difference from `prediction`, and how it was loaded.
    None for flavors without such a loader (a scikit-learn model needs its pickled code)."""
    from mlflow.models import Model

    if "pytorch" not in Model.load(str(folder / "MLmodel")).flavors:
        return None
    from mlpipe.models.torch_export import score_in_fresh_process

    fresh, info = score_in_fresh_process(folder, spec.kind.model_input(data, spec))
    return {"max_abs_diff": float(np.abs(fresh - prediction.probabilities).max()), **info}
