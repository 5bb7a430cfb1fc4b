"""Data tests every kind runs (with the fixtures of mlpipe.data.check_fixtures): the row count,
the columns the dataset config names, and drift against the reference version of the categories
and numbers the dataset config names (`checks.drift_columns`, `checks.ks_columns`, columns of the
kind's summary)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlpipe.data import drift
from mlpipe.data.drift import DriftThresholds
from mlpipe.data.spec import DatasetSpec


def test_row_count(data: Any, spec: DatasetSpec) -> None:
    low, high = spec.checks.get("rows", [1, None])
    size = spec.kind.size(data)
    assert size >= low, f"{size} rows, expected at least {low}"
    if high is not None:
        assert size <= high, f"{size} rows, expected at most {high}"


def test_named_columns(summary: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = spec.missing_columns(summary.columns)
    assert not missing, "; ".join(missing)


def _columns(spec: DatasetSpec, key: str) -> list[str]:
    columns = spec.checks.get(key) or []
    if not columns:
        pytest.skip(f"no checks.{key} in the dataset config")
    return list(columns)


def test_category_drift(
    summary: pd.DataFrame,
    ref_summary: pd.DataFrame,
    spec: DatasetSpec,
    thresholds: DriftThresholds,
    measurements: dict[str, Any],
) -> None:
    found = drift.category_drift(ref_summary, summary, _columns(spec, "drift_columns"), thresholds)
    measurements.update(found.measured)
    assert not found.drifted, found.message


def test_numeric_drift(
    summary: pd.DataFrame,
    ref_summary: pd.DataFrame,
    spec: DatasetSpec,
    thresholds: DriftThresholds,
    measurements: dict[str, Any],
) -> None:
    found = drift.numeric_drift(ref_summary, summary, _columns(spec, "ks_columns"), thresholds)
    measurements.update(found.measured)
    assert not found.drifted, found.message
