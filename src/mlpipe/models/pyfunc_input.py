"""Who checks the data a served model is given: the model itself.

The exported models declare concrete types in their signatures, so MLflow's scoring server can
parse what clients send (`text/csv` needs a type for every column; JSON numbers become floats
where the model takes numbers). But MLflow's pyfunc also enforces those types on every frame a
Python caller hands over, before the model sees it, and refuses the rows users have: integers that
pandas read from a file for a `double` column, a text column pandas read as floats because every
value in it is missing, an image of another size. Our models check every value themselves (the
table's first stage, the image model's decoding), with one line naming the column or the image,
for every client alike. So for models whose pyfunc loader is one of ours, MLflow checks the
parameters (`predict_method`) and leaves the data to the model; every other model in the process
is validated by MLflow as before.

This module ships inside every exported model (its `code/`), so wherever the model loads, the
loader registers itself here first.
"""

from __future__ import annotations

from typing import Any

_OWN_CHECKS: set[str] = set()  # pyfunc loader modules whose models check their own input


def leave_data_to_the_model(loader_module: str) -> None:
    """Let the models `loader_module` loads check their own input (idempotent)."""
    import mlflow.pyfunc

    _OWN_CHECKS.add(loader_module)
    original = mlflow.pyfunc._validate_prediction_input
    if getattr(original, "leaves_data_to", None) is _OWN_CHECKS:
        return

    def validate(data: Any, params: Any, input_schema: Any, params_schema: Any, flavor: Any = None) -> Any:
        # MLflow passes the model's loader module as `flavor`: that tells our models from others.
        schema = None if flavor in _OWN_CHECKS else input_schema
        return original(data, params, schema, params_schema, flavor)

    validate.leaves_data_to = _OWN_CHECKS  # type: ignore[attr-defined]
    mlflow.pyfunc._validate_prediction_input = validate
