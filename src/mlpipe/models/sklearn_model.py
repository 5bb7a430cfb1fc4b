"""Building and exporting the scikit-learn model, all from config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mlpipe
from mlpipe.data.spec import FEATURE_ROLES, DatasetSpec
from mlpipe.errors import StepError, cause
from mlpipe.models.features import build_preprocessor, model_input
from mlpipe.models.model_config import pinned_requirements, resolve_model_config

MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")
PYFUNC_LOADER = "mlpipe.models.sklearn_pyfunc"  # answers predict_proba too (MLflow's does not)


def load_model_config(path: Path, spec: DatasetSpec) -> dict[str, Any]:
    resolved = resolve_model_config(path, spec)
    if "estimator" not in resolved or "_target_" not in resolved["estimator"]:
        raise StepError(f"model config '{path}': expected an 'estimator' with a '_target_'")
    return resolved


def build_model(spec: DatasetSpec, model_config: dict[str, Any]) -> Pipeline:
    try:
        estimator = instantiate(model_config["estimator"])
    except Exception as e:  # Hydra wraps import and argument errors alike
        raise StepError(
            f"model config: cannot build estimator {model_config['estimator']['_target_']}: {cause(e)}"
        ) from e
    settings = dict(model_config.get("preprocessing") or {})
    steps: list[tuple[str, Any]] = [
        ("input", model_input(spec)),
        ("preprocess", build_preprocessor(spec, settings)),
    ]
    if settings.get("standardize"):  # linear models want features on one scale; trees do not care
        steps.append(("standardize", StandardScaler()))
    return Pipeline([*steps, ("estimator", estimator)])


def output_type(target: pd.Series) -> str:
    if pd.api.types.is_float_dtype(target):
        return "double"
    return "long" if pd.api.types.is_integer_dtype(target) else "string"


# What each role of input column accepts (the model's first stage checks it, see features.ModelInput).
ACCEPTS = {
    "numeric": "a number: integer or float (a float is never truncated), or missing",
    "categorical": "a category: text (a number is read as its text), or missing",
    "ordinal": "one of the ordered categories as text, or missing (an unknown one is coded -1)",
    "text": "free text, or missing",
    "date": "a date (YYYY-MM-DD, or any form pandas parses), or missing",
}


# The signature's type of each role of column: what MLflow's scoring server parses a client's
# JSON or CSV into (numbers as floats, never truncated; the rest as text).
SIGNATURE_TYPES = {
    "numeric": "double",
    "categorical": "string",
    "ordinal": "string",
    "text": "string",
    "date": "string",
}


def signature(spec: DatasetSpec, output: str, predict_methods: bool):  # -> ModelSignature
    """The exported model's signature, from the schema, never inferred from data: the feature
    columns it requires, each with the concrete type of its role (`SIGNATURE_TYPES`), so
    `mlflow models serve` parses `text/csv` and JSON by them. What a value may be is the model's
    first stage's to check (`ACCEPTS`), the same for every client: MLflow leaves the data to it
    (`pyfunc_input`), so a Python caller's table as pandas read it (integers in a `double` column,
    an empty text column read as floats) is taken too. A classifier takes `predict_method`
    (`predict` or `predict_proba`) as a parameter."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = [ColSpec(SIGNATURE_TYPES[role], column) for role in FEATURE_ROLES for column in spec.roles[role]]
    params = ParamSchema([ParamSpec("predict_method", "string", "predict")]) if predict_methods else None
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec(output)]), params=params)


def export_sklearn(
    model: Pipeline, spec: DatasetSpec, example: pd.DataFrame, target: pd.Series, path: Path
) -> Path:
    """Save as an MLflow model: cloudpickle (skops refuses these types), explicit signature,
    an input example, and this package inside so it loads without the project installed."""
    import mlflow.sklearn
    from mlflow.models import Model

    classes = (
        model.classes_.tolist() if hasattr(model, "predict_proba") and spec.task == "classification" else None
    )
    # cloudpickle is chosen on purpose (skops refuses these types): hush MLflow's advice about it.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        signature=signature(spec, output_type(target), predict_methods=classes is not None),
        input_example=example[spec.features],
        code_paths=[str(Path(mlpipe.__file__).parent)],
        pip_requirements=pinned_requirements(MODEL_REQUIREMENTS),
        metadata={
            "task": spec.task,
            "target": spec.target,
            "inputs": {c: ACCEPTS[role] for role in FEATURE_ROLES for c in spec.roles[role]},
            **({"classes": classes} if classes else {}),
        },
    )
    # The sklearn flavor stays (mlflow.sklearn.load_model works); pyfunc loads through ours.
    mlmodel = Model.load(str(path / "MLmodel"))
    mlmodel.flavors["python_function"]["loader_module"] = PYFUNC_LOADER
    mlmodel.save(str(path / "MLmodel"))
    return path
