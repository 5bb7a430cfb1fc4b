"""Tables: a CSV or Parquet file in, Parquet between steps (dtypes kept), one row per example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.data.kinds import Cleaned, DataKind, Fetched, NewData
from mlpipe.data.sources import fetch
from mlpipe.data.spec import DatasetSpec
from mlpipe.data.tables import read_table, write_table


class TableKind(DataKind):
    name = "table"
    checks = Path(__file__).with_name("checks.py")
    column_keys = ("checks.categories", "checks.ranges", "cleaning.bounds")

    def fetch(self, source: str, dest: Path, where: str) -> Fetched:
        from mlpipe.data.kinds.table.scan import scan

        path = fetch(source, dest / "download", where)
        found = scan(path, where)
        size = {"rows": found.rows, "columns": len(found.columns)}
        return Fetched(
            path,
            f"fetched {path.name}: {found.rows} rows, {len(found.columns)} columns",
            metrics=size,
            metadata=size,
            schema=found.schema,
        )

    def clean(self, raw: Path, spec: DatasetSpec, workdir: Path, where: str) -> Cleaned:
        from mlpipe.data.kinds.table.cleaning import clean

        return clean(read_table(raw, where), spec, where)

    def read(self, path: Path, where: str) -> pd.DataFrame:
        return read_table(path, where)

    def write(self, data: pd.DataFrame, folder: Path, name: str) -> Path:
        return write_table(data, folder / f"{name}.parquet")

    def describe(self, data: pd.DataFrame) -> dict[str, Any]:
        return {"rows": len(data), "columns": len(data.columns)}

    def schema(self, data: pd.DataFrame) -> dict[str, Any]:
        from mlpipe.data.kinds.table.schema import mlflow_schema

        return mlflow_schema(data)

    def size(self, data: pd.DataFrame) -> int:
        return len(data)

    def split_rows(
        self, data: pd.DataFrame, test_size: float, seed: int, stratify_by: str | None, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        from mlpipe.data.splitting import split_rows

        return split_rows(data, test_size, seed, stratify_by, where)

    def summary(self, data: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        return data

    def model_input(self, data: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        """The table as it is: the exported model takes rows as users have them."""
        return data

    def target(self, data: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
        return data[spec.target].to_numpy()

    def take(self, data: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        from mlpipe.data.splitting import take

        return take(data, rows)

    def read_new(
        self, source: str, dest: Path, spec: DatasetSpec, key: list[str] | None, where: str
    ) -> NewData:
        """Rows keyed by the dataset's id columns (`key` names others; with none, a row's content
        is its key); the hash covers the feature columns, so an edit elsewhere rescores nothing."""
        from mlpipe.data.kinds.table.new_rows import read_new_table

        path = fetch(source, dest, where)
        return read_new_table(read_table(path, where), spec, key, f"{where}: source '{path.name}'")

    def batch(self, new: NewData, rows: np.ndarray) -> pd.DataFrame:
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # a run of rows (a full run's): a slice
            return new.rows.iloc[rows[0] : rows[-1] + 1]
        return new.rows.iloc[rows]

    def load_batch(
        self, batch: pd.DataFrame, spec: DatasetSpec, where: str
    ) -> tuple[pd.DataFrame, dict[int, str]]:
        return batch, {}  # the rows as they are: the model's first stage checks each value

    def new_summary(self, new: NewData, rows: np.ndarray, spec: DatasetSpec) -> pd.DataFrame:
        return self.summary(new.rows.iloc[rows], spec)


KIND = TableKind()
