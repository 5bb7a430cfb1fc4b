"""basic_cleaning's logic: plain data in, data out, with a report of what each rule dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpipe.data.kinds import Cleaned
from mlpipe.data.kinds.table.columns import check_columns, coerce_numeric
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError


def clean(df: pd.DataFrame, spec: DatasetSpec, where: str) -> Cleaned:
    """Validate, drop rows outside the bounds, parse dates, drop exact duplicates.

    Rules apply in order and each row is counted against the first rule that drops it.
    A missing value is not "outside the bounds" (the model imputes it), except in the target.
    """
    check_columns(df, spec, where)
    spec.check_named_columns(df.columns, where)  # the bounds' columns too
    df = coerce_numeric(df, spec, where)
    if df[spec.target].isna().all():
        raise StepError(f"{where}: target column '{spec.target}' is empty (all values missing)")

    dropped: dict[str, int] = {}
    kept = np.ones(len(df), dtype=bool)  # the rows no rule has dropped yet: filtered once, at the end

    def keep(mask: pd.Series, rule: str) -> None:
        nonlocal kept
        passing = mask.to_numpy(dtype=bool)
        dropped[rule] = int((kept & ~passing).sum())
        kept &= passing

    keep(df[spec.target].notna(), f"{spec.target} missing")
    for column, bounds in (spec.cleaning.get("bounds") or {}).items():
        low, high = bounds
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise StepError(f"{where}: cleaning bound on column '{column}', which is not numeric")
        keep(df[column].between(low, high) | df[column].isna(), f"{column} outside [{low}, {high}]")
    if not kept.all():
        df = df[kept]
    dates = {c: pd.to_datetime(df[c], errors="coerce", format="mixed") for c in spec.roles["date"]}
    if dates:
        df = df.assign(**dates)
    if spec.cleaning.get("drop_duplicates", True):
        duplicate = df.duplicated().to_numpy()
        dropped["exact duplicate"] = int(duplicate.sum())
        if duplicate.any():
            df = df[~duplicate]
    result = Cleaned(df.reset_index(drop=True), sum(dropped.values()) + len(df), dropped)
    if df.empty:
        raise StepError(f"{where}: every row was dropped by cleaning ({result.describe()})")
    return result
