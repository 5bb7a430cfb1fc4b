"""A table's schema as MLflow shows a dataset's, from the column types alone.

MLflow's `infer_signature` looks at every value of every text column in Python (about 10 s for a
million rows); the types pandas (or Arrow) already holds say the same in microseconds, and whether
a column is required is one vectorized null count per column.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

INTEGERS = {1: "integer", 2: "integer", 4: "integer", 8: "long"}  # bytes -> MLflow type


def column_type(values: pd.Series) -> str:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return INTEGERS.get(dtype.itemsize, "long")
    if pd.api.types.is_float_dtype(dtype):
        return "float" if dtype.itemsize == 4 else "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_object_dtype(dtype):  # text, unless every value is bytes
        # The first value settles it for text, the usual case: no pass over a million strings.
        if not len(values) or type(values.iloc[0]) is not bytes:
            return "string"
        return "binary" if values.map(type).eq(bytes).all() else "string"
    return "string"  # pandas' string and categorical types


def mlflow_schema(df: pd.DataFrame) -> dict[str, Any]:
    """`{"mlflow_colspec": [...]}`, as `infer_signature(df).inputs.to_dict()` gives it."""
    nulls = df.isna().any()
    return {
        "mlflow_colspec": [
            {"type": column_type(df[name]), "name": str(name), "required": not bool(nulls[name])}
            for name in df.columns
        ]
    }


NUMBER_TYPES = ("integer", "long", "float", "double")


def merge_type(a: str, b: str) -> str:
    """The type of a column whose parts were read as `a` and `b` (pandas types each chunk of a
    CSV on its own): the wider number, else text."""
    if a == b:
        return a
    if a in NUMBER_TYPES and b in NUMBER_TYPES:
        return max(a, b, key=NUMBER_TYPES.index)
    return "string"


def merge_schemas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The schema of two parts of one table (same columns), as a whole read would give it."""
    return {
        "mlflow_colspec": [
            {
                "type": merge_type(x["type"], y["type"]),
                "name": x["name"],
                "required": x["required"] and y["required"],
            }
            for x, y in zip(a["mlflow_colspec"], b["mlflow_colspec"], strict=True)
        ]
    }
