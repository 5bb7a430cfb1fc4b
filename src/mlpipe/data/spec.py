"""The dataset config as a typed object: its kind, column roles, target, task, cleaning, checks and
the metrics models of it are compared by.

The config is the only source of schema (DESIGN.md principle 5): no column list lives in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.errors import StepError
from mlpipe.yaml_file import load_yaml

if TYPE_CHECKING:
    from mlpipe.data.kinds import DataKind

FEATURE_ROLES = ("numeric", "categorical", "ordinal", "text", "date")
OTHER_ROLES = ("id", "ignored")
TASKS = ("regression", "classification")
DIRECTIONS = ("minimize", "maximize")
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
        from mlpipe.data import kinds

        config = dict(config)
        for key in ("name", "target", "task", "columns"):
            if key not in config:
                raise StepError(f"{where}: missing key '{key}'")
        if config["task"] not in TASKS:
            raise StepError(f"{where}: task '{config['task']}' is not one of {', '.join(TASKS)}")
        kind = kinds.get(str(config.get("kind") or "table"), where)
        columns = dict(config["columns"] or {})
        unknown = set(columns) - set(FEATURE_ROLES) - set(OTHER_ROLES)
        if unknown:
            raise StepError(
                f"{where}: unknown column role(s) {sorted(unknown)}; expected one of "
                f"{', '.join(FEATURE_ROLES + OTHER_ROLES)}"
            )
        ordinal = dict(columns.get("ordinal") or {})
        roles = {role: list(columns.get(role) or []) for role in FEATURE_ROLES + OTHER_ROLES}
        roles["ordinal"] = list(ordinal)
        seen: dict[str, str] = {}
        for role, names in roles.items():
            for column in names:
                if column in seen or column == config["target"]:
                    raise StepError(
                        f"{where}: column '{column}' has two roles ({seen.get(column, 'target')} and {role})"
                    )
                seen[column] = role
        return cls(
            name=str(config["name"]),
            kind=kind,
            source=str(config.get("source") or ""),
            target=str(config["target"]),
            task=str(config["task"]),
            roles=roles,
            metrics=_metrics(config.get("metrics"), str(config["task"]), where),
            ordinal_categories={k: [str(c) for c in v] for k, v in ordinal.items()},
            cleaning=dict(config.get("cleaning") or {}),
            checks=dict(config.get("checks") or {}),
            stratify_by=config.get("stratify_by"),
            options=dict(config.get(kind.options_key) or {}) if kind.options_key else {},
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


DEFAULT_METRICS = {
    "regression": Metrics("val_mae", "mae", "minimize"),
    "classification": Metrics("val_accuracy", "accuracy", "maximize"),
}


def _metrics(given: Any, task: str, where: str) -> Metrics:
    if not given:
        return DEFAULT_METRICS[task]
    values = {**DEFAULT_METRICS[task].__dict__, **dict(given)}
    if values["direction"] not in DIRECTIONS:
        raise StepError(
            f"{where}: metrics.direction '{values['direction']}' is not one of {', '.join(DIRECTIONS)}"
        )
    return Metrics(str(values["validation"]), str(values["test"]), str(values["direction"]))
