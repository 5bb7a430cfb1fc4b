"""Reading and writing tables (CSV or Parquet) with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlpipe.errors import StepError

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: Path, where: str) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise StepError(f"{where}: file '{path.name}' has an unknown format; expected .csv or .parquet")
    return fmt


def read_table(path: Path, where: str) -> pd.DataFrame:
    """A non-empty table; `where` says which step and artifact, for the error line."""
    fmt = table_format(path, where)
    if not path.is_file():
        raise StepError(f"{where}: file '{path}' not found")
    if path.stat().st_size == 0:
        raise StepError(f"{where}: file '{path.name}' is empty; expected a header row and data rows")
    try:
        df = pd.read_csv(path, low_memory=False) if fmt == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError as e:
        raise StepError(f"{where}: file '{path.name}' has no columns; expected a header row") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StepError(f"{where}: file '{path.name}' could not be read as {fmt}: {first}") from e
    if df.empty:
        raise StepError(f"{where}: file '{path.name}' has a header but no data rows")
    return df


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Parquet keeps dtypes (parsed dates stay dates) between steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if table_format(path, "write_table") == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path
