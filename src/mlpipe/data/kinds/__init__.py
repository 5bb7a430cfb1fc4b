"""Data kinds: what a dataset is made of (a table, a folder of images), behind one interface.

A kind is a package `mlpipe.data.kinds.<name>` whose `KIND` is a `DataKind`; a dataset config
selects it with `kind: <name>`. Steps call the kind and never branch on it, so adding a kind (text,
time series) is its own package, its tests and a dataset YAML. Between steps a kind's data travels
as one file it writes and reads back (`write`, `read`); the raw data is what `fetch` returns. New
data to score (batch inference) is what `read_new` returns: a key and a content hash per row, the
rows handed to the scorers batch by batch (`batch` in the step, `load_batch` in a scorer).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlpipe.errors import StepError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.data.spec import DatasetSpec


@dataclass(frozen=True)
class Fetched:
    """What `download` logs as the raw data: one file, and what it measured while reading it."""

    path: Path
    summary: str  # one log line, in the user's terms
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None  # what `DataKind.schema` says of the raw data, if it can


@dataclass(frozen=True)
class Cleaned:
    data: Any
    rows_in: int
    dropped: dict[str, int]  # rule -> rows (or images) it dropped, in the order the rules apply

    @property
    def rows_out(self) -> int:
        return self.rows_in - sum(self.dropped.values())

    def describe(self) -> str:
        dropped = ", ".join(f"{n} {rule}" for rule, n in self.dropped.items() if n) or "nothing dropped"
        return f"{self.rows_in} rows in, {self.rows_out} out; dropped: {dropped}"


@dataclass(frozen=True)
class NewData:
    """New data to score, as a kind reads it from a source: what the inference ledger knows each
    row by (its key) and what it was scored from (a hash of its model input), one entry per row."""

    keys: list[str]  # as text; unique among the rows not refused
    hashes: list[str]
    key_columns: pd.DataFrame  # the key as the source holds it (id columns, a file's path)
    refused: dict[int, str]  # row -> why it cannot be scored at all (no key, a repeated key)
    rows: Any  # the kind's own handle on the rows, for `batch`

    def __len__(self) -> int:
        return len(self.keys)


class DataKind(ABC):
    name: ClassVar[str]
    options_key: ClassVar[str | None] = None  # the dataset config's section for this kind, if any
    checks: ClassVar[Path]  # the kind's data tests (pytest functions), run by data_check
    column_keys: ClassVar[tuple[str, ...]] = ()  # dataset config keys naming columns, besides COLUMN_KEYS

    @abstractmethod
    def fetch(self, source: str, dest: Path, where: str) -> Fetched:
        """Fetch the source into `dest` as it is, reading it once so a bad source fails here."""

    @abstractmethod
    def clean(self, raw: Path, spec: DatasetSpec, workdir: Path, where: str) -> Cleaned:
        """The raw data (as fetched) validated and cleaned, with what each rule dropped."""

    @abstractmethod
    def read(self, path: Path, where: str) -> Any:
        """Data as `write` left it (`where` names the step and artifact for error lines)."""

    @abstractmethod
    def write(self, data: Any, folder: Path, name: str) -> Path:
        """Write `data` into `folder` as one file with reproducible bytes; return the file."""

    @abstractmethod
    def describe(self, data: Any) -> dict[str, Any]:
        """Metadata of an artifact holding `data` (its size and shape)."""

    def schema(self, data: Any) -> dict[str, Any] | None:
        """The schema MLflow shows for a dataset holding `data`, in MLflow's dataset-schema JSON
        (`{"mlflow_colspec": [...]}` for columns, `{"mlflow_tensorspec": {...}}` for arrays);
        None when the kind cannot say."""
        return None

    @abstractmethod
    def size(self, data: Any) -> int:
        """Rows (or images)."""

    @abstractmethod
    def split_rows(
        self, data: Any, test_size: float, seed: int, stratify_by: str | None, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the rows (or images) of two parts, the second holding `test_size` of
        the data, stratified when asked."""

    def split(
        self, data: Any, test_size: float, seed: int, stratify_by: str | None, where: str
    ) -> tuple[Any, Any]:
        """The two parts of `split_rows`."""
        first, second = self.split_rows(data, test_size, seed, stratify_by, where)
        return self.take(data, first), self.take(data, second)

    @abstractmethod
    def summary(self, data: Any, spec: DatasetSpec) -> pd.DataFrame:
        """One row per row (or image): the columns the drift tests compare with the reference."""

    @abstractmethod
    def model_input(self, data: Any, spec: DatasetSpec) -> Any:
        """What the exported model is given to score `data`."""

    @abstractmethod
    def target(self, data: Any, spec: DatasetSpec) -> np.ndarray:
        """The true value (or class) of each row."""

    @abstractmethod
    def take(self, data: Any, rows: np.ndarray) -> Any:
        """The rows (or images) at these positions."""

    # -- new data to score (batch inference) --------------------------------------------------
    @abstractmethod
    def read_new(
        self, source: str, dest: Path, spec: DatasetSpec, key: list[str] | None, where: str
    ) -> NewData:
        """New data from a source `download` accepts, fetched into `dest`: each row's key (the
        `key` columns; None: the kind's own key) and a hash of its content."""

    @abstractmethod
    def batch(self, new: NewData, rows: np.ndarray) -> Any:
        """The rows at these positions, small to send to a scorer in another process."""

    @abstractmethod
    def load_batch(self, batch: Any, spec: DatasetSpec, where: str) -> tuple[Any, dict[int, str]]:
        """In the scorer: the batch as this kind holds data, of the rows that load (in the
        batch's order), and the rows that do not (position in the batch -> why)."""

    def new_summary(self, new: NewData, rows: np.ndarray, spec: DatasetSpec) -> pd.DataFrame | None:
        """The new rows at these positions as `summary` gives them, for the drift tests against
        the reference; None where the source alone cannot say (images: every one decoded)."""
        return None


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def get(name: str, where: str = "dataset config") -> DataKind:
    if name not in names():
        raise StepError(
            f"{where}: kind '{name}' is not one of {', '.join(names())} (packages in mlpipe/data/kinds/)"
        )
    return importlib.import_module(f"{__name__}.{name}").KIND
