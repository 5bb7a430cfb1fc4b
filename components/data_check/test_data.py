"""Data tests driven by the dataset config: the data scientist's checks as pytest tests."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlpipe.drift import kl_divergence, ks_pvalue, sample_for_ks
from mlpipe.schema import DatasetSpec


def test_required_columns(data: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = [c for c in spec.required_columns if c not in data.columns]
    assert not missing, f"missing columns: {missing}"


def test_column_types(data: pd.DataFrame, spec: DatasetSpec) -> None:
    wrong = [c for c in spec.numeric_columns if not pd.api.types.is_numeric_dtype(data[c])]
    wrong += [c for c in spec.roles["date"] if not pd.api.types.is_datetime64_any_dtype(data[c])]
    assert not wrong, f"columns of the wrong type: {wrong}"


def test_target_present(data: pd.DataFrame, spec: DatasetSpec) -> None:
    assert data[spec.target].notna().all(), f"target '{spec.target}' has missing values"


def test_row_count(data: pd.DataFrame, spec: DatasetSpec) -> None:
    low, high = spec.checks.get("rows", [1, None])
    assert len(data) >= low, f"{len(data)} rows, expected at least {low}"
    if high is not None:
        assert len(data) <= high, f"{len(data)} rows, expected at most {high}"


def test_known_categories(data: pd.DataFrame, spec: DatasetSpec) -> None:
    unknown = {
        column: sorted(set(data[column].dropna().astype(str)) - {str(v) for v in known})
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


def test_category_drift(
    data: pd.DataFrame,
    ref_data: pd.DataFrame,
    spec: DatasetSpec,
    kl_threshold: float,
    measurements: dict[str, Any],
) -> None:
    columns = spec.checks.get("drift_columns") or []
    if not columns:
        pytest.skip("no drift_columns in the dataset config")
    divergences = {c: kl_divergence(ref_data[c], data[c]) for c in columns}
    measurements.update({f"kl.{c}": v for c, v in divergences.items()})
    drifted = {c: round(v, 4) for c, v in divergences.items() if v >= kl_threshold}
    assert not drifted, f"KL divergence from the reference at or above {kl_threshold}: {drifted}"


def test_numeric_drift(
    data: pd.DataFrame,
    ref_data: pd.DataFrame,
    spec: DatasetSpec,
    ks_alpha: float,
    ks_sample_size: int,
    measurements: dict[str, Any],
) -> None:
    columns = spec.checks.get("ks_columns") or []
    if not columns:
        pytest.skip("no ks_columns in the dataset config")
    pvalues = {
        c: ks_pvalue(sample_for_ks(ref_data[c], ks_sample_size), sample_for_ks(data[c], ks_sample_size))
        for c in columns
    }
    measurements.update({f"ks_pvalue.{c}": v for c, v in pvalues.items()})
    drifted = {c: p for c, p in pvalues.items() if p < ks_alpha}
    assert not drifted, f"KS p-value below {ks_alpha} (distribution shifted): {drifted}"
