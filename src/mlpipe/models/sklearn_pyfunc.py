"""How MLflow's pyfunc flavor runs an exported scikit-learn model (its MLmodel file names this
module): `predict` as scikit-learn's, and with `params={"predict_method": "predict_proba"}` the
class probabilities, one column per class. It ships inside the model (`code/`), so serving needs
only the model's own requirements."""

from __future__ import annotations

from typing import Any

import pandas as pd

PREDICT_METHODS = ("predict", "predict_proba")


class SklearnPyfunc:
    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        method = (params or {}).get("predict_method", "predict")
        if method not in PREDICT_METHODS:
            from mlflow.exceptions import MlflowException

            raise MlflowException.invalid_parameter_value(
                f"predict_method '{method}': expected one of {', '.join(PREDICT_METHODS)}"
            )
        if method == "predict_proba":
            columns = [str(c) for c in self.model.classes_]
            return pd.DataFrame(
                self.model.predict_proba(data), columns=columns, index=getattr(data, "index", None)
            )
        return self.model.predict(data)


def _load_pyfunc(path: str) -> SklearnPyfunc:
    import mlflow.sklearn

    return SklearnPyfunc(mlflow.sklearn.load_model(path))
