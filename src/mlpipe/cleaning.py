"""basic_cleaning's logic: plain data in, data out, with a report of what each rule dropped."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlpipe.errors import StepError
from mlpipe.schema import DatasetSpec, check_columns, coerce_numeric


def clean(df: pd.DataFrame, spec: DatasetSpec, where: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate, drop rows outside the bounds, parse dates, drop exact duplicates.

    Rules apply in order and each row is counted against the first rule that drops it.
    A missing value is not "outside the bounds" (the model imputes it), except in the target.
    """
    check_columns(df, spec, where)
    df = coerce_numeric(df, spec, where)
    if df[spec.target].isna().all():
        raise StepError(f"{where}: target column '{spec.target}' is empty (all values missing)")

    dropped: dict[str, int] = {}

    def keep(mask: pd.Series, rule: str) -> None:
        nonlocal df
        dropped[rule] = int((~mask).sum())
        df = df[mask]

    keep(df[spec.target].notna(), f"{spec.target} missing")
    for column, bounds in (spec.cleaning.get("bounds") or {}).items():
        if column not in df.columns:
            raise StepError(f"{where}: cleaning bound on column '{column}', which the data lacks")
        low, high = bounds
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise StepError(f"{where}: cleaning bound on column '{column}', which is not numeric")
        keep(df[column].between(low, high) | df[column].isna(), f"{column} outside [{low}, {high}]")
    for column in spec.roles["date"]:
        df = df.assign(**{column: pd.to_datetime(df[column], errors="coerce", format="mixed")})
    if spec.cleaning.get("drop_duplicates", True):
        keep(~df.duplicated(), "exact duplicate")
    report = {"rows_in": sum(dropped.values()) + len(df), "rows_out": len(df), "dropped": dropped}
    if df.empty:
        raise StepError(f"{where}: every row was dropped by cleaning ({_describe(dropped)})")
    return df.reset_index(drop=True), report


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {rule}" for rule, n in dropped.items() if n) or "nothing dropped"


def describe_report(report: dict[str, Any]) -> str:
    return f"{report['rows_in']} rows in, {report['rows_out']} out; dropped: {_describe(report['dropped'])}"
