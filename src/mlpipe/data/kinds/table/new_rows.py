"""A table as new data to score: each row's key (its id columns, or its content when the dataset
names none) and a hash of its feature columns.

Both are computed from each value's canonical text, not from how pandas typed the column: a file
read again after one edit can type a column differently (integers become floats when a value goes
missing, numbers become text when one cell holds a word), and that must not make every other row
look changed.
"""

from __future__ import annotations

import hashlib
import numbers as numeric_types

import numpy as np
import pandas as pd

from mlpipe.data.kinds import NewData
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError

MISSING = "\x1e"  # a missing value's text: no real value is this control character ("" is one)
SEPARATOR = "\x1f"
KEY_SEPARATOR = "|"  # between the values of a key of several columns, as the ledger shows it
CONTENT_KEY = "row_hash"  # the key column when the dataset names no id column
EXACT_INTEGERS = 2.0**53


def number_text(values: np.ndarray) -> np.ndarray:
    """Floats as text: integral ones as integers (3.0 and 3 read alike), missing as MISSING."""
    text = values.astype(str).astype(object)  # the shortest text that reads back as the same float
    finite = np.isfinite(values)
    whole = np.floor(np.where(finite, values, 0.0)) == values
    integral = finite & whole & (np.abs(values) < EXACT_INTEGERS)
    text[integral] = values[integral].astype(np.int64).astype(str)
    text[np.isnan(values)] = MISSING
    return text


def scalar_text(value: object, numeric: bool) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, numeric_types.Number) and not isinstance(value, bool):
        return str(number_text(np.asarray([float(value)]))[0])  # type: ignore[arg-type]
    if numeric:  # a numeric column that pandas read as text: "3" reads as 3 did
        try:
            return str(number_text(np.asarray([float(str(value))]))[0])
        except ValueError:
            pass
    return str(value)


def canonical(values: pd.Series, numeric: bool) -> np.ndarray:
    """Each value's text, whatever the column's dtype."""
    if pd.api.types.is_integer_dtype(values) and not values.hasnans:
        return values.to_numpy().astype(str).astype(object)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return number_text(values.to_numpy(dtype="float64", na_value=np.nan))
    if pd.api.types.is_string_dtype(values) and not numeric and values.map(type).isin((str, float)).all():
        # text (NaN where missing), the common case, at the speed of one vectorized pass
        text = values.to_numpy(dtype=object).copy()
        text[values.isna().to_numpy()] = MISSING
        return text
    return np.array([scalar_text(v, numeric) for v in values.astype(object).tolist()], dtype=object)


def joined(columns: list[np.ndarray], rows: int) -> list[str]:
    if not columns:
        return [""] * rows
    result = columns[0].astype(object)
    for column in columns[1:]:
        result = result + SEPARATOR + column
    return result.tolist()


def content_hashes(df: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """A hash of each row's feature columns (a column the table lacks counts as missing)."""
    numeric = set(spec.roles["numeric"])
    columns = [
        canonical(df[c], c in numeric) if c in df.columns else np.full(len(df), MISSING, dtype=object)
        for c in spec.features
    ]
    return [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in joined(columns, len(df))]


def read_new_table(df: pd.DataFrame, spec: DatasetSpec, key: list[str] | None, where: str) -> NewData:
    key_names = list(spec.roles["id"]) if key is None else list(key)
    absent = [c for c in key_names if c not in df.columns]
    if absent:
        raise StepError(
            f"{where} lacks key column(s) {', '.join(map(repr, absent))}; found: "
            f"{', '.join(map(str, df.columns))}; expected the dataset's id columns or inference.key"
        )
    hashes = content_hashes(df, spec)
    refused: dict[int, str] = {}
    if not key_names:
        keys, key_columns = list(hashes), pd.DataFrame({CONTENT_KEY: hashes})
    else:
        parts = [canonical(df[c], pd.api.types.is_numeric_dtype(df[c])) for c in key_names]
        keys = [KEY_SEPARATOR.join(values) for values in zip(*parts, strict=True)]
        for column, values in zip(key_names, parts, strict=True):
            for row in np.flatnonzero(values == MISSING).tolist():
                refused.setdefault(row, f"no key: column '{column}' is empty")
        key_columns = df[key_names].reset_index(drop=True)
    first: dict[str, int] = {}
    for row, value in enumerate(keys):
        if row in refused:
            continue
        if value in first:
            what = f"key '{value}'" if key_names else "content (the dataset names no id column)"
            refused[row] = f"{what} repeats data row {first[value] + 1}"
        else:
            first[value] = row
    return NewData(keys, hashes, key_columns, refused, df.reset_index(drop=True))
