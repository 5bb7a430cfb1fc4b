"""Reading and writing tables (CSV or Parquet) with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from mlpipe.digests import HashingWriter
from mlpipe.errors import StepError

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: Path, where: str) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise StepError(f"{where}: file '{path.name}' has an unknown format; expected .csv or .parquet")
    return fmt


@contextmanager
def reading(path: Path, where: str) -> Iterator[str]:
    """Checks before reading a table file, and its readers' errors as one line naming it; yields
    the format."""
    fmt = table_format(path, where)
    if not path.is_file():
        raise StepError(f"{where}: file '{path}' not found")
    if path.stat().st_size == 0:
        raise StepError(f"{where}: file '{path.name}' is empty; expected a header row and data rows")
    try:
        yield fmt
    except pd.errors.EmptyDataError as e:
        raise StepError(f"{where}: file '{path.name}' has no columns; expected a header row") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StepError(f"{where}: file '{path.name}' could not be read as {fmt}: {first}") from e


def no_rows(path: Path, where: str) -> StepError:
    return StepError(f"{where}: file '{path.name}' has a header but no data rows")


def read_table(path: Path, where: str) -> pd.DataFrame:
    """A non-empty table; `where` says which step and artifact, for the error line."""
    with reading(path, where) as fmt:
        df = pd.read_csv(path, low_memory=False) if fmt == "csv" else _read_parquet(path)
    if df.empty:
        raise no_rows(path, where)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    df = pd.read_parquet(path)
    # Arrow's allocator keeps the pages it decoded for reuse: give them back, or every step that
    # reads a table holds about half of it again until it ends.
    pa.default_memory_pool().release_unused()
    return df


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Parquet keeps dtypes (parsed dates stay dates) between steps; its digest is computed as it
    is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if table_format(path, "write_table") == "csv":
        df.to_csv(path, index=False)
    else:
        with HashingWriter(path) as out:
            df.to_parquet(out, index=False)
    return path
