"""Splitting a table, stratified when asked; shared by data_split and the train/val split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from mlpipe.errors import StepError


def split(
    df: pd.DataFrame, test_size: float, seed: int, stratify_by: str | None, where: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0 < test_size < 1:
        raise StepError(f"{where}: test_size {test_size} must lie between 0 and 1")
    stratify = None
    if stratify_by:
        if stratify_by not in df.columns:
            raise StepError(f"{where}: stratify column '{stratify_by}' is not in the data")
        stratify = df[stratify_by].astype(str)
        counts = stratify.value_counts()
        if counts.min() < 2:
            raise StepError(
                f"{where}: value {counts.idxmin()!r} of stratify column '{stratify_by}' has "
                f"{counts.min()} row(s); a stratified split needs at least 2 per value"
            )
    try:
        first, second = train_test_split(df, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as e:
        raise StepError(f"{where}: cannot split {len(df)} rows with test_size {test_size}: {e}") from e
    return first.reset_index(drop=True), second.reset_index(drop=True)
