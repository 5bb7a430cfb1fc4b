"""A table's columns against the dataset config: present, and numbers where numbers belong."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError


def check_columns(df: pd.DataFrame, spec: DatasetSpec, where: str) -> None:
    missing = [c for c in spec.required_columns if c not in df.columns]
    if missing:
        raise StepError(
            f"{where} lacks required column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{spec.name}'); found: {', '.join(map(str, df.columns))}"
        )


def numbers(values: pd.Series, where: str) -> pd.Series:
    """A column as numbers (missing stays missing); a value that is not a number is an error
    naming the column and the row."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise StepError(
            f"{where}: column '{values.name}' has non-numeric value {values.iloc[position]!r} "
            f"in data row {position + 1}; expected numbers"
        )
    return converted


def coerce_numeric(df: pd.DataFrame, spec: DatasetSpec, where: str) -> pd.DataFrame:
    """Numeric columns as numbers; a value that is not a number is an error naming it. Only the
    columns that were not numbers yet are replaced: a table that is already typed is not copied."""
    converted = {
        column: numbers(df[column], where)
        for column in spec.numeric_columns
        if column in df.columns and not pd.api.types.is_numeric_dtype(df[column])
    }
    return df.assign(**converted) if converted else df


def as_strings(values: pd.Series) -> pd.Series:
    """Strings as plain objects with NaN for missing, whatever pandas or MLflow handed over."""
    present = values.notna()
    return values.astype(object).where(present, np.nan).map(lambda v: v if v != v else str(v))
