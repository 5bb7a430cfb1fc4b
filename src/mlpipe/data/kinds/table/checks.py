"""Data tests of a table, driven by the dataset config's `checks`: the data scientist's checks as
pytest tests (run by data_check, with the fixtures of mlpipe.data.checking)."""

from __future__ import annotations

import pandas as pd

from mlpipe.data.spec import DatasetSpec


def test_required_columns(data: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = [c for c in spec.required_columns if c not in data.columns]
    assert not missing, f"missing columns: {missing}"


def test_column_types(data: pd.DataFrame, spec: DatasetSpec) -> None:
    wrong = [c for c in spec.numeric_columns if not pd.api.types.is_numeric_dtype(data[c])]
    wrong += [c for c in spec.roles["date"] if not pd.api.types.is_datetime64_any_dtype(data[c])]
    assert not wrong, f"columns of the wrong type: {wrong}"


def test_target_present(data: pd.DataFrame, spec: DatasetSpec) -> None:
    assert data[spec.target].notna().all(), f"target '{spec.target}' has missing values"


def test_known_categories(data: pd.DataFrame, spec: DatasetSpec) -> None:
    unknown = {
        column: sorted(set(pd.Series(data[column].dropna().unique()).astype(str)) - {str(v) for v in known})
        for column, known in (spec.checks.get("categories") or {}).items()
    }
    unknown = {c: v for c, v in unknown.items() if v}
    assert not unknown, f"unknown category values: {unknown}"


def test_value_ranges(data: pd.DataFrame, spec: DatasetSpec) -> None:
    outside = {}
    for column, (low, high) in (spec.checks.get("ranges") or {}).items():
        values = data[column].dropna()
        n = int((~values.between(low, high)).sum())
        if n:
            outside[column] = f"{n} values outside [{low}, {high}]"
    assert not outside, f"values out of range: {outside}"
