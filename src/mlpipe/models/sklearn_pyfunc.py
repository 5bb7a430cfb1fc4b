"""How MLflow's pyfunc flavor runs an exported scikit-learn model (its MLmodel file names this
module): `predict` as scikit-learn's, and with `params={"predict_method": "predict_proba"}` the
class probabilities, one column per class. The model's first stage checks the rows (MLflow leaves
them to it: `pyfunc_input`), so it takes a table as pandas reads it; bad input (a value that is not
a number, a missing column) is MLflow's invalid-input error, which a server answers with 400 and
the line naming the column. It ships inside the model (`code/`), so serving needs only the model's
requirements."""

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
        from mlflow.exceptions import MlflowException

        from mlpipe.errors import StepError

        method = (params or {}).get("predict_method", "predict")
        if method not in PREDICT_METHODS:
            raise MlflowException.invalid_parameter_value(
                f"predict_method '{method}': expected one of {', '.join(PREDICT_METHODS)}"
            )
        try:
            if method == "predict_proba":
                columns = [str(c) for c in self.model.classes_]
                index = getattr(data, "index", None)
                return pd.DataFrame(self.model.predict_proba(data), columns=columns, index=index)
            return self.model.predict(data)
        except StepError as e:  # the model's first stage refused a value: the client's to fix
            raise MlflowException.invalid_parameter_value(str(e)) from e


def _load_pyfunc(path: str) -> SklearnPyfunc:
    import mlflow.sklearn

    from mlpipe.models.pyfunc_input import leave_data_to_the_model

    leave_data_to_the_model(__name__)
    return SklearnPyfunc(mlflow.sklearn.load_model(path))
