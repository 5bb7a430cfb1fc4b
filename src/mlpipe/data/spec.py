"""The dataset config as a typed object: its kind, column roles, target, task, cleaning, checks and
the metrics models of it are compared by.

The config is the only source of schema (DESIGN.md principle 5): no column list lives in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.data import dataset_schema
from mlpipe.data.dataset_schema import DIRECTIONS, FEATURE_ROLES, OTHER_ROLES, TASKS
from mlpipe.errors import StepError
from mlpipe.yaml_file import load_yaml

if TYPE_CHECKING:
    from mlpipe.data.kinds import DataKind

__all__ = ["DIRECTIONS", "FEATURE_ROLES", "OTHER_ROLES", "TASKS", "DatasetSpec", "Metrics"]
# Keys naming columns of the data (as the kind's `summary` has them) that every kind reads.
COLUMN_KEYS = ("checks.drift_columns", "checks.ks_columns", "stratify_by")


@dataclass(frozen=True)
class Metrics:
    """How models of a dataset are compared: what a sweep optimizes and promote ranks by
    (`validation`, logged by train), what promote's gate compares (`test`, logged by test_model)."""

    validation: str
    test: str
    direction: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: DataKind  # the plug-in that reads, cleans, checks and splits this kind of data
    source: str
    target: str
    task: str
    roles: dict[str, list[str]]  # role -> columns, in config order
    metrics: Metrics
    ordinal_categories: dict[str, list[str]] = field(default_factory=dict)
    cleaning: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    stratify_by: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the kind's own section (`image:`)
    config: dict[str, Any] = field(default_factory=dict)  # as written: `${dataset...}` in model configs

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], where: str = "dataset config") -> DatasetSpec:
        """The spec of a dataset config, checked against its schema first (one line per mistake)."""
        from mlpipe.data import kinds

        checked = dataset_schema.check(config, where)
        config = dict(config)
        kind = kinds.get(checked.kind, where)
        columns = getattr(checked, "columns", None)
        ordinal = dict(columns.ordinal) if isinstance(columns, dataset_schema.Columns) else {}
        roles = {
            role: list(getattr(columns, role)) if isinstance(columns, dataset_schema.Columns) else []
            for role in FEATURE_ROLES + OTHER_ROLES
        }
        return cls(
            name=checked.name,
            kind=kind,
            source=checked.source,
            target=checked.target,
            task=checked.task,
            roles=roles,
            metrics=Metrics(checked.metrics.validation, checked.metrics.test, checked.metrics.direction),
            ordinal_categories={k: [str(c) for c in v] for k, v in ordinal.items()},
            cleaning=_with_defaults(checked, config, "cleaning"),
            checks=_with_defaults(checked, config, "checks"),
            stratify_by=checked.stratify_by,
            options=_with_defaults(checked, config, kind.options_key) if kind.options_key else {},
            config=config,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        path = Path(path)
        if not path.is_file():
            raise StepError(f"dataset config '{path}' not found; expected a YAML file")
        where = f"dataset config {path}"
        return cls.from_dict(load_yaml(path, where) or {}, where=where)

    @property
    def features(self) -> list[str]:
        return [c for role in FEATURE_ROLES for c in self.roles[role]]

    @property
    def numeric_columns(self) -> list[str]:
        """Columns that must hold numbers: numeric features, and the target of a regression."""
        return self.roles["numeric"] + ([self.target] if self.task == "regression" else [])

    @property
    def required_columns(self) -> list[str]:
        return [*self.features, self.target]

    def named_columns(self) -> list[tuple[str, str]]:
        """(key, column) for every column the config names outside its column roles, under the
        keys every kind reads and those its kind reads (a list, a mapping's keys, or one name)."""
        found = []
        for key in (*COLUMN_KEYS, *self.kind.column_keys):
            value: Any = self.config
            for part in key.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            names = [value] if isinstance(value, str) else list(value or [])
            found += [(key, str(name)) for name in names]
        return found

    def missing_columns(self, columns: Iterable[str]) -> list[str]:
        """What the config names that `columns` (the data's, as the kind summarizes it) lack."""
        present = set(map(str, columns))
        return [
            f"{key} names column '{column}', which the data lacks"
            for key, column in self.named_columns()
            if column not in present
        ]

    def check_named_columns(self, columns: Iterable[str], where: str) -> None:
        missing = self.missing_columns(columns)
        if missing:
            raise StepError(f"{where}: {'; '.join(missing)} (its columns: {', '.join(map(str, columns))})")


def _with_defaults(checked: dataset_schema.DatasetFile, config: Mapping[str, Any], key: str) -> dict:
    """A section as the file writes it, with the schema's defaults for the keys it leaves out."""
    defaults = getattr(checked, key).model_dump(mode="json")
    given = dict(config.get(key) or {})
    return {**{k: v for k, v in defaults.items() if k not in given}, **given}
