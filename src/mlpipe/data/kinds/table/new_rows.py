"""A table as new data to score: each row's key and a hash of its feature columns.

The key is the dataset's id columns (or `inference.key`); a row without one, or with one an
earlier row has, is refused with the reason. A dataset that names no id column is keyed by
content: the hash of the row's features and, for the second and later of identical rows, its
occurrence among them (`<hash>#2`, `<hash>#3`; the first is the hash alone). So duplicate rows
are distinct rows, each scored, and an edit changes that one row's key alone: the ledger sees a
new key (scored) and a key gone (counted as gone), never a "changed" row, since without ids an
edited row cannot be told from one removed and one added. Keying by position instead would turn
one row inserted or deleted near the top into every row below it "changed".

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
CONTENT_KEY = "row_hash"  # the key columns when the dataset names no id column: the content's hash
OCCURRENCE = "occurrence"  # ... and 1 for the first row with that content, 2 for the next, ...
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
    """A hash of each row's feature columns (every one of them is in `df`)."""
    numeric = set(spec.roles["numeric"])
    columns = [canonical(df[c], c in numeric) for c in spec.features]
    return [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in joined(columns, len(df))]


def lacking(df: pd.DataFrame, names: list[str], what: str, expected: str, where: str) -> None:
    """One line naming the columns the whole source lacks (a cell left empty is a row's problem)."""
    absent = [c for c in names if c not in df.columns]
    if absent:
        raise StepError(
            f"{where} lacks {what} column(s) {', '.join(map(repr, absent))}; found: "
            f"{', '.join(map(str, df.columns))}; expected {expected}"
        )


def content_keys(hashes: list[str]) -> tuple[list[str], pd.DataFrame]:
    """Keys of a table without ids: the hash, and `#n` for the n-th of identical rows."""
    occurrence = pd.Series(hashes).groupby(hashes, sort=False).cumcount().to_numpy() + 1
    keys = [h if n == 1 else f"{h}#{n}" for h, n in zip(hashes, occurrence.tolist(), strict=True)]
    return keys, pd.DataFrame({CONTENT_KEY: hashes, OCCURRENCE: occurrence})


def read_new_table(df: pd.DataFrame, spec: DatasetSpec, key: list[str] | None, where: str) -> NewData:
    key_names = list(spec.roles["id"]) if key is None else list(key)
    lacking(df, key_names, "key", "the dataset's id columns or inference.key", where)
    lacking(df, spec.features, "feature", f"every feature column of dataset '{spec.name}'", where)
    hashes = content_hashes(df, spec)
    if not key_names:
        keys, key_columns = content_keys(hashes)
        return NewData(keys, hashes, key_columns, {}, df.reset_index(drop=True))
    refused: dict[int, str] = {}
    parts = [canonical(df[c], pd.api.types.is_numeric_dtype(df[c])) for c in key_names]
    keys = [KEY_SEPARATOR.join(values) for values in zip(*parts, strict=True)]
    for column, values in zip(key_names, parts, strict=True):
        for row in np.flatnonzero(values == MISSING).tolist():
            refused.setdefault(row, f"no key: column '{column}' is empty")
    first: dict[str, int] = {}
    for row, value in enumerate(keys):
        if row in refused:
            continue
        if value in first:
            refused[row] = f"key '{value}' repeats data row {first[value] + 1}"
        else:
            first[value] = row
    return NewData(keys, hashes, df[key_names].reset_index(drop=True), refused, df.reset_index(drop=True))
