"""The schema of a dataset file (conf/dataset/<name>.yaml), declared once: the keys every kind
has, and each kind's own sections (`cleaning`, `checks`, and `image` for images). Every dataset
config is checked against it before anything uses it: main.py checks the files a run composes
before Hydra resolves `${dataset...}`, and every step checks the config it is given
(`DatasetSpec.from_dict`). A mistake is one line naming the file and the key. The README's
dataset reference is generated from these models (`make contracts`).

Kept free of pandas and the kinds' packages: main.py checks the files before it imports them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from mlpipe.errors import StepError

FEATURE_ROLES = ("numeric", "categorical", "ordinal", "text", "date")
OTHER_ROLES = ("id", "ignored")
TASKS = ("regression", "classification")
DIRECTIONS = ("minimize", "maximize")

ColumnList = list[str]
Pair = tuple[float, float]


class Section(BaseModel):
    """A part of the file: unknown keys are mistakes (a misspelled check would silently not run)."""

    model_config = ConfigDict(extra="forbid", strict=False)


class Columns(Section):
    numeric: ColumnList = Field(default_factory=list, description="numbers (integers or floats)")
    categorical: ColumnList = Field(default_factory=list, description="categories, one-hot encoded")
    ordinal: dict[str, list[str | int | float]] = Field(
        default_factory=dict, description="column: its categories in order (coded 0, 1, ...)"
    )
    text: ColumnList = Field(default_factory=list, description="free text, one TF-IDF per column")
    date: ColumnList = Field(default_factory=list, description="dates, used as days since the latest")
    id: ColumnList = Field(
        default_factory=list, description="identify a row (never a feature; batch inference's key)"
    )
    ignored: ColumnList = Field(default_factory=list, description="read but not used")


class Metrics(Section):
    validation: str = Field(description="logged by train: what a sweep optimizes and promote ranks by")
    test: str = Field(description="logged by test_model: what promote's gate and compare rank by")
    direction: Literal["minimize", "maximize"] = Field(description="which way is better")


class DatasetFile(Section):
    """The keys every dataset file has, whatever its kind."""

    name: str = Field(description="the MLflow experiment (and W&B project) and the registered model")
    kind: str = Field(
        "table", description="what the data is made of: a package in mlpipe/data/kinds/ (table, images)"
    )
    source: str = Field(
        description="where download fetches it: a path (from the project root), file:// or http(s):// "
        "URL, pkg://<package>/<file>, sklearn://digits"
    )
    target: str = Field(description="the column (images: the class) models predict")
    task: Literal["regression", "classification"] = Field(description="regression or classification")
    metrics: Metrics = Field(description="how models of this dataset are compared")
    stratify_by: str | None = Field(
        None, description="column the test and validation splits keep the proportions of (null: none)"
    )


class TableCleaning(Section):
    bounds: dict[str, Pair] = Field(
        default_factory=dict, description="column: [low, high]; rows outside are dropped (missing kept)"
    )
    drop_duplicates: bool = Field(True, description="drop rows identical in every column")


class TableChecks(Section):
    rows: tuple[int, int | None] = Field(
        (1, None), description="[fewest, most] rows (most: null for no limit)"
    )
    categories: dict[str, list[str | int | float]] = Field(
        default_factory=dict, description="column: every value it may hold"
    )
    ranges: dict[str, Pair] = Field(default_factory=dict, description="column: [low, high] of its values")
    drift_columns: ColumnList = Field(
        default_factory=list, description="categories compared with the reference (KL divergence)"
    )
    ks_columns: ColumnList = Field(
        default_factory=list, description="numbers compared with the reference (KS test)"
    )


class TableDataset(DatasetFile):
    columns: Columns = Field(description="role: columns (every column the models use has one role)")
    cleaning: TableCleaning = Field(default_factory=TableCleaning, description="what basic_cleaning drops")
    checks: TableChecks = Field(default_factory=TableChecks, description="what data_check tests")

    @field_validator("columns")
    @classmethod
    def one_role_per_column(cls, columns: Columns, info: ValidationInfo) -> Columns:
        target = info.data.get("target")
        seen: dict[str, str] = {target: "target"} if target else {}
        for role in (*FEATURE_ROLES, *OTHER_ROLES):
            for column in getattr(columns, role):  # a list, or ordinal's mapping of columns
                if column in seen:
                    raise ValueError(f"column '{column}' is named twice ({seen[column]} and {role})")
                seen[column] = role
        return columns


class ImageOptions(Section):
    size: tuple[int, int] | None = Field(
        None, description="[height, width] every image is resized to when cleaned; null: all must match"
    )


class ImageCleaning(Section):
    drop_duplicates: bool = Field(True, description="drop images with identical pixels")


class ImageChecks(Section):
    rows: tuple[int, int | None] = Field((1, None), description="[fewest, most] images")
    classes: list[str | int] = Field(default_factory=list, description="every class there may be")
    min_per_class: int = Field(2, description="fewest images of each class")
    shape: tuple[int, int, int] | None = Field(None, description="[channels, height, width] of every image")
    value_range: Pair = Field((0, 255), description="[low, high] of the pixel values")
    min_contrast: float | None = Field(None, description="an image whose max - min pixel is below is blank")
    drift_columns: ColumnList = Field(
        default_factory=list, description="compared with the reference (KL divergence): label"
    )
    ks_columns: ColumnList = Field(
        default_factory=list, description="compared with the reference (KS test): brightness"
    )


class ImageDataset(DatasetFile):
    columns: dict[str, Any] = Field(default_factory=dict, description="images have none: {}")
    image: ImageOptions = Field(default_factory=ImageOptions, description="how images are read")
    cleaning: ImageCleaning = Field(default_factory=ImageCleaning, description="what basic_cleaning drops")
    checks: ImageChecks = Field(default_factory=ImageChecks, description="what data_check tests")

    @field_validator("columns")
    @classmethod
    def no_columns(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            raise ValueError("images have no columns; expected {}")
        return value


# One schema per data kind (a package under mlpipe/data/kinds/; tests check every kind has one).
BY_KIND: dict[str, type[DatasetFile]] = {"table": TableDataset, "images": ImageDataset}


# -- checking ------------------------------------------------------------------------------------
def _key(location: tuple[Any, ...]) -> str:
    key = ""
    for part in location:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _section(model: type[BaseModel], location: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model at `location` inside `model`, if that is a section."""
    for part in location:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


# pydantic's words for what YAML calls lists and mappings
WORDS = {"a valid tuple": "a list", "a valid list": "a list", "a valid dictionary": "a mapping"}


def _problem(error: Mapping[str, Any], schema: type[BaseModel]) -> str:
    location = tuple(error["loc"])
    key, kind, found = _key(location), error["type"], error.get("input")
    parent = _section(schema, location[:-1])
    if kind == "missing" and location and isinstance(location[-1], int):  # a list too short
        return f"key '{_key(location[:-1])}' is {found!r}; expected {location[-1] + 1} or more items"
    if kind == "missing":
        field = parent.model_fields.get(str(location[-1])) if parent else None
        why = f" ({field.description})" if field and field.description else ""
        return f"missing key '{key}'{why}"
    if kind == "extra_forbidden":
        known = list(parent.model_fields) if parent else []
        return f"unknown key '{key}'" + (f"; expected one of {', '.join(known)}" if known else "")
    message = str(error["msg"])
    for pydantic_word, word in WORDS.items():
        message = message.replace(pydantic_word, word)
    if message.startswith("Input should be "):
        return f"key '{key}' is {found!r}; expected {message.removeprefix('Input should be ')}"
    if message.startswith("Value error, "):
        return f"key '{key}': {message.removeprefix('Value error, ')}"
    return f"key '{key}' is {found!r}: {message}"


def check(config: Mapping[str, Any], where: str) -> DatasetFile:
    """The dataset config checked against its kind's schema; every mistake in one line."""
    from mlpipe.data import kinds

    if not isinstance(config, Mapping):
        raise StepError(f"{where}: expected a mapping of keys (name, source, target, ...), found {config!r}")
    kind = config.get("kind", "table")
    schema = BY_KIND.get(kind) if isinstance(kind, str) else None
    if schema is None or kind not in kinds.names():
        raise StepError(
            f"{where}: key 'kind' is {kind!r}; expected one of {', '.join(kinds.names())} "
            "(packages in mlpipe/data/kinds/)"
        )
    try:
        return schema.model_validate(dict(config))
    except ValidationError as e:
        problems = list(dict.fromkeys(_problem(error, schema) for error in e.errors()))
        raise StepError(f"{where}: {'; '.join(problems)}") from None


# -- the README's reference, generated from the models ---------------------------------------------
def _type_text(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if origin is Literal:
        return " or ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Annotated:
        return _type_text(args[0])
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is tuple:
        return f"[{', '.join(_type_text(a) for a in args)}]"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    return {str: "text", int: "integer", float: "number", bool: "true or false", Any: "anything"}.get(
        annotation, str(annotation)
    )


def _default_text(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, tuple):
        value = list(value)
    text = "null" if value is None else str(value).replace("None", "null")
    return f"`{'true' if value is True else 'false' if value is False else text}`"


def _rows(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key = f"{prefix}{name}"
        rows.append(
            f"| `{key}` | {_type_text(field.annotation)} | {_default_text(field)} | {field.description} |"
        )
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            rows += _rows(inner, f"{key}.")
    return rows


def reference() -> str:
    """Markdown tables of every key: those of every dataset file, then each kind's own."""
    header = ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    parts = ["Every dataset file:", "", *header, *_rows(DatasetFile, "")]
    common = tuple(DatasetFile.model_fields)
    for kind, schema in BY_KIND.items():
        parts += ["", f"`kind: {kind}` adds:", "", *header, *_rows(schema, "", skip=common)]
    return "\n".join(parts)
