"""Splitting a table, stratified when asked; shared by data_split and the train/val split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mlpipe.errors import StepError


def split(
    df: pd.DataFrame, test_size: float, seed: int, stratify_by: str | None, where: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    first, second = split_rows(df, test_size, seed, stratify_by, where)
    return take(df, first), take(df, second)


def take(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    return df.iloc[rows].reset_index(drop=True)


def split_rows(
    df: pd.DataFrame, test_size: float, seed: int, stratify_by: str | None, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the rows of each part, the second holding `test_size` of them."""
    if not 0 < test_size < 1:
        raise StepError(f"{where}: test_size {test_size} must lie between 0 and 1")
    stratify = None  # the class of each row, as integers ordered as the class names sort
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
        # scikit-learn sorts the classes it is given: codes in the names' order split the rows as
        # the names do, without sorting a million strings.
        stratify = pd.Categorical(stratify, categories=sorted(counts.index)).codes
    try:
        first, second = train_test_split(
            np.arange(len(df)), test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as e:
        raise StepError(f"{where}: cannot split {len(df)} rows with test_size {test_size}: {e}") from e
    return first, second
