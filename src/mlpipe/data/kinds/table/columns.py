"""A table's columns against the dataset config: present, numbers where numbers belong, and the
frame the exported model is given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpipe.data.spec import FEATURE_ROLES, DatasetSpec
from mlpipe.errors import StepError


def check_columns(df: pd.DataFrame, spec: DatasetSpec, where: str) -> None:
    missing = [c for c in spec.required_columns if c not in df.columns]
    if missing:
        raise StepError(
            f"{where} lacks required column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{spec.name}'); found: {', '.join(map(str, df.columns))}"
        )


def coerce_numeric(df: pd.DataFrame, spec: DatasetSpec, where: str) -> pd.DataFrame:
    """Numeric columns as floats; a value that is not a number is an error naming it."""
    df = df.copy()
    for column in spec.numeric_columns:
        if column not in df.columns or pd.api.types.is_numeric_dtype(df[column]):
            continue
        converted = pd.to_numeric(df[column], errors="coerce")
        bad = converted.isna() & df[column].notna() & (df[column].astype(str).str.strip() != "")
        if bad.any():
            position = int(bad.to_numpy().argmax())
            raise StepError(
                f"{where}: column '{column}' has non-numeric value {df[column].iloc[position]!r} "
                f"in data row {position + 1}; expected numbers"
            )
        df[column] = converted
    return df


def model_frame(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's input: only the feature columns, numbers as floats, the rest as strings.

    Dates travel as ISO strings so that a JSON request and a table row look the same.
    """
    out = pd.DataFrame(index=df.index)
    for role in FEATURE_ROLES:
        for column in spec.roles[role]:
            values = df[column]
            if role == "numeric":
                out[column] = values.astype("float64")
            elif role == "date" and pd.api.types.is_datetime64_any_dtype(values):
                out[column] = values.dt.strftime("%Y-%m-%d").astype(object)
            else:
                out[column] = as_strings(values)
    return out


def as_strings(values: pd.Series) -> pd.Series:
    """Strings as plain objects with NaN for missing, whatever pandas or MLflow handed over."""
    present = values.notna()
    return values.astype(object).where(present, np.nan).map(lambda v: v if v != v else str(v))
