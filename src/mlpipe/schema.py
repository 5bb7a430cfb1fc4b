"""The dataset config as a typed object: column roles, target, task, cleaning and checks.

The config is the only source of schema (DESIGN.md principle 5): no column list lives in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlpipe.errors import StepError

FEATURE_ROLES = ("numeric", "categorical", "ordinal", "text", "date")
OTHER_ROLES = ("id", "ignored")
TASKS = ("regression", "classification")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    target: str
    task: str
    roles: dict[str, list[str]]  # role -> columns, in config order
    ordinal_categories: dict[str, list[str]] = field(default_factory=dict)
    cleaning: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    stratify_by: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], where: str = "dataset config") -> DatasetSpec:
        config = dict(config)
        for key in ("name", "target", "task", "columns"):
            if key not in config:
                raise StepError(f"{where}: missing key '{key}'")
        if config["task"] not in TASKS:
            raise StepError(f"{where}: task '{config['task']}' is not one of {', '.join(TASKS)}")
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
            target=str(config["target"]),
            task=str(config["task"]),
            roles=roles,
            ordinal_categories={k: [str(c) for c in v] for k, v in ordinal.items()},
            cleaning=dict(config.get("cleaning") or {}),
            checks=dict(config.get("checks") or {}),
            stratify_by=config.get("stratify_by"),
            raw=config,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        path = Path(path)
        if not path.is_file():
            raise StepError(f"dataset config '{path}' not found; expected a YAML file")
        return cls.from_dict(yaml.safe_load(path.read_text()) or {}, where=f"dataset config {path}")

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


def check_columns(df: pd.DataFrame, spec: DatasetSpec, where: str) -> None:
    missing = [c for c in spec.required_columns if c not in df.columns]
    if missing:
        raise StepError(
            f"{where} lacks required column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{spec.name}'); found: {', '.join(map(str, df.columns))}"
        )


def coerce_numeric(df: pd.DataFrame, spec: DatasetSpec, where: str) -> pd.DataFrame:
    """Numeric columns as floats; a value that is not a number is an error naming it."""
    df = df.copy()
    for column in spec.numeric_columns:
        if column not in df.columns or pd.api.types.is_numeric_dtype(df[column]):
            continue
        converted = pd.to_numeric(df[column], errors="coerce")
        bad = converted.isna() & df[column].notna() & (df[column].astype(str).str.strip() != "")
        if bad.any():
            position = int(bad.to_numpy().argmax())
            raise StepError(
                f"{where}: column '{column}' has non-numeric value {df[column].iloc[position]!r} "
                f"in data row {position + 1}; expected numbers"
            )
        df[column] = converted
    return df


def model_frame(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's input: only the feature columns, numbers as floats, the rest as strings.

    Dates travel as ISO strings so that a JSON request and a table row look the same.
    """
    out = pd.DataFrame(index=df.index)
    for role in FEATURE_ROLES:
        for column in spec.roles[role]:
            values = df[column]
            if role == "numeric":
                out[column] = values.astype("float64")
            elif role == "date" and pd.api.types.is_datetime64_any_dtype(values):
                out[column] = values.dt.strftime("%Y-%m-%d").astype(object)
            else:
                out[column] = as_strings(values)
    return out


def as_strings(values: pd.Series) -> pd.Series:
    """Strings as plain objects with NaN for missing, whatever pandas or MLflow handed over."""
    present = values.notna()
    return values.astype(object).where(present, np.nan).map(lambda v: v if v != v else str(v))


def signature(spec: DatasetSpec, output_type: str):  # -> mlflow.models.ModelSignature
    """The exported model's signature, from the schema, never inferred from data."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = [
        ColSpec("double" if role == "numeric" else "string", column)
        for role in FEATURE_ROLES
        for column in spec.roles[role]
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec(output_type)]))
