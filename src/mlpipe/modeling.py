"""Building, exporting and loading the scikit-learn model, all from config."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.pipeline import Pipeline

import mlpipe
from mlpipe.errors import StepError
from mlpipe.features import build_preprocessor
from mlpipe.schema import DatasetSpec, model_frame, signature

# What the exported model needs at load time, pinned to what trained it (no slow inference).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")


def resolve_model_config(path: Path, spec: DatasetSpec) -> dict[str, Any]:
    """The model config with `${dataset...}` resolved, whether main.py resolved it already or
    the step runs alone on a file from conf/model/."""
    if not path.is_file():
        raise StepError(f"model config '{path}' not found; expected a YAML file")
    model = yaml.safe_load(path.read_text()) or {}
    root = OmegaConf.create({"dataset": spec.raw, "model": model})
    return OmegaConf.to_container(root, resolve=True)["model"]  # type: ignore[index,return-value]


def load_model_config(path: Path, spec: DatasetSpec) -> dict[str, Any]:
    resolved = resolve_model_config(path, spec)
    if "estimator" not in resolved or "_target_" not in resolved["estimator"]:
        raise StepError(f"model config '{path}': expected an 'estimator' with a '_target_'")
    return resolved


def build_model(spec: DatasetSpec, model_config: dict[str, Any]) -> Pipeline:
    try:
        estimator = instantiate(model_config["estimator"])
    except Exception as e:  # Hydra wraps import and argument errors alike
        first = str(e).strip().splitlines()[0]
        raise StepError(
            f"model config: cannot build estimator {model_config['estimator']['_target_']}: {first}"
        ) from e
    preprocessor = build_preprocessor(spec, dict(model_config.get("preprocessing") or {}))
    return Pipeline([("preprocess", preprocessor), ("estimator", estimator)])


def output_type(target: pd.Series) -> str:
    if pd.api.types.is_float_dtype(target):
        return "double"
    return "long" if pd.api.types.is_integer_dtype(target) else "string"


def export_sklearn(
    model: Pipeline, spec: DatasetSpec, example: pd.DataFrame, target: pd.Series, path: Path
) -> Path:
    """Save as an MLflow model: cloudpickle (skops refuses these types), explicit signature,
    an input example, and this package inside so it loads without the project installed."""
    import mlflow.sklearn

    requirements = [f"{p}=={importlib.metadata.version(p)}" for p in MODEL_REQUIREMENTS]
    # cloudpickle is chosen on purpose (skops refuses these types): hush MLflow's advice about it.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        signature=signature(spec, output_type(target)),
        input_example=model_frame(example, spec),
        code_paths=[str(Path(mlpipe.__file__).parent)],
        pip_requirements=requirements,
    )
    return path
