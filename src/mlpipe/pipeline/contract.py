"""A step's contract, declared once in its component's run.py: its typed parameters (a dataclass)
and the artifacts it reads and writes.

Everything else is derived from it: the pipeline definition (which step reads what, and so the
order), the argument parsing of run.py, the MLproject file MLflow reads and the README's step
table (`make contracts` writes those two; tests/test_contracts.py fails when they drift).
Parameter values live in config.yaml only, in the section named after the step; a parameter
that reads or writes an artifact gets its value from the contract (`name:latest`, `name`)
unless the section sets it.

Values keep their types across the process boundary: `encode` writes each one as the command-line
text `typed` reads back (JSON for anything but a string: `null`, `true`, `42`, `["a", "b"]`).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, NewType

from mlpipe import project
from mlpipe.errors import StepError

# A path relative to the project root (made absolute where it is read), or a URL left as it is.
ProjectPath = NewType("ProjectPath", str)

PARAM, READS, WRITES, DATASET, MODEL, OVERRIDES = "param", "reads", "writes", "dataset", "model", "overrides"


def param(help: str) -> Any:
    """A parameter whose value comes from the step's section of config.yaml."""
    return field(metadata={"role": PARAM, "help": help})


def reads(artifact: str, help: str = "", context: str = "input") -> Any:
    """A parameter holding the reference of an artifact the step reads (`name:latest` unless
    the step's config section names another version or alias). `context` says what the step
    uses the data for (`training`, `evaluation`): MLflow shows it next to the dataset."""
    text = help or f"Reference of the {artifact} artifact (name:latest, name:vN or name:<alias>)"
    return field(metadata={"role": READS, "artifact": artifact, "help": text, "context": context})


def writes(artifact: str, help: str = "") -> Any:
    """A parameter holding the name the step logs an artifact under."""
    return field(
        metadata={
            "role": WRITES,
            "artifact": artifact,
            "help": help or "Name of the artifact to log",
            "context": "output",
        }
    )


def model_config() -> Any:
    """The model config (YAML): the pipeline passes the composed one."""
    return field(metadata={"role": MODEL, "help": "YAML model config, relative to the project root"})


def hydra_overrides() -> Any:
    """The Hydra overrides the pipeline was started with (a step that composes the config again,
    for another model, starts from them); none when the step runs alone."""
    return field(
        metadata={
            "role": OVERRIDES,
            "help": "Hydra overrides of the pipeline run (the pipeline passes its own)",
        }
    )


@dataclass(frozen=True)
class StepParams:
    """What every step is given; a step's own params class adds its parameters to it."""

    dataset_config: ProjectPath = field(
        metadata={"role": DATASET, "help": "YAML dataset config, relative to the project root"}
    )


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any
    role: str
    help: str
    artifact: str = ""
    context: str = ""  # of an artifact read or written: how MLflow labels its dataset


@dataclass(frozen=True)
class StepContract:
    step: str  # the pipeline's name for the step; several components may implement one step
    params: type  # a StepParams dataclass: one field per parameter, made with the helpers above
    doc: str  # the component's docstring: "<step>: what it does, in a user's words"
    after: tuple[str, ...] = ()  # steps that must pass first though no artifact flows between them
    opt_in: bool = False  # runs only when named in main.steps, never as part of `all`
    side_effects: bool = False  # changes more than its outputs (the registry): never reused
    compose: tuple[str, ...] = ()  # config choices its standalone defaults come from (model=cnn)

    def __post_init__(self) -> None:
        if not (is_dataclass(self.params) and issubclass(self.params, StepParams)):
            raise TypeError(f"{self.step}: the contract's params must be a StepParams dataclass")

    @property
    def summary(self) -> str:
        """What the step does: the docstring's first paragraph, without its `<step>:` prefix."""
        first = " ".join((self.doc or "").strip().split("\n\n")[0].split())
        return first.split(": ", 1)[1] if first.startswith(self.step) and ": " in first else first

    def parameters(self) -> list[Parameter]:
        hints = typing.get_type_hints(self.params)
        result = []
        for f in fields(self.params):
            meta = f.metadata
            result.append(
                Parameter(
                    f.name,
                    hints[f.name],
                    meta.get("role", PARAM),
                    meta.get("help", ""),
                    meta.get("artifact", ""),
                    meta.get("context", ""),
                )
            )
        return result

    def reads(self) -> dict[str, str]:
        """parameter -> the artifact it reads."""
        return {p.name: p.artifact for p in self.parameters() if p.role == READS}

    def writes(self) -> dict[str, str]:
        return {p.name: p.artifact for p in self.parameters() if p.role == WRITES}

    def dataset_contexts(self) -> dict[str, str]:
        """artifact -> the context its MLflow dataset is logged with (`input`, `output`,
        `training`, ...)."""
        return {p.artifact: p.context for p in self.parameters() if p.role in (READS, WRITES)}

    def build(self, values: Mapping[str, Any], where: str) -> Any:
        """The params object from raw values (config values or command-line text), each checked
        against its declared type; `where` names the source for the error line."""
        missing = [p.name for p in self.parameters() if p.name not in values]
        if missing:
            raise StepError(f"{where}: missing parameter(s) {', '.join(missing)} of step '{self.step}'")
        return self.params(
            **{
                p.name: typed(values[p.name], p.annotation, f"{where}: parameter '{p.name}'")
                for p in self.parameters()
            }
        )


# -- values: one codec for the command line, one type check for everything ----------------------
NULL_WORDS = ("null", "none", "")


def encode(value: Any) -> str:
    """A value as command-line text that `typed` reads back to the same value."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(the inner type, whether None is allowed) of `X | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def type_name(annotation: Any) -> str:
    inner, optional = unwrap_optional(annotation)
    if inner is ProjectPath:
        name = "a path or URL"
    elif typing.get_origin(inner) is list:
        name = "a list"
    else:
        name = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
            inner, str(inner)
        )
    return f"{name} or null" if optional else name


def _from_text(text: str, inner: Any) -> Any:
    """Command-line text as the JSON value it spells (`null`, `true`, `0.2`, `[1, 2]`); a list
    may also be comma-separated, bracketed or not as Hydra writes it (`[a,b]`), and a flag `yes`/`no`."""
    word = text.strip().lower()
    if word in NULL_WORDS:
        return None
    if inner is bool and word in ("yes", "no"):
        return word == "yes"
    if typing.get_origin(inner) is list and not word.startswith("["):
        return text.split(",")
    try:
        return json.loads(text)
    except ValueError:
        if typing.get_origin(inner) is list and word.endswith("]"):
            return text.strip()[1:-1].split(",")
        return text


def typed(value: Any, annotation: Any, where: str) -> Any:
    """`value` (a config value or command-line text) as `annotation` says; one error line naming
    `where` when it is not one."""
    inner, optional = unwrap_optional(annotation)
    if isinstance(value, str) and (inner not in (str, ProjectPath) or optional):
        parsed = _from_text(value, inner)
        value = value if inner in (str, ProjectPath) and parsed is not None else parsed
    if value is None:
        if optional:
            return None
        raise StepError(f"{where} is null; expected {type_name(annotation)}")
    if inner is bool and isinstance(value, bool):
        return value
    if inner is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if inner is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if inner is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if inner is ProjectPath and isinstance(value, str) and value:
        return project.resolve_location(value)
    if typing.get_origin(inner) is list and isinstance(value, Sequence) and not isinstance(value, str):
        return [str(item).strip() for item in value if str(item).strip()]
    raise StepError(f"{where} is {value!r}; expected {type_name(annotation)}")


def default_value(parameter: Parameter, section: Mapping[str, Any]) -> Any:
    """A parameter's value when the config section does not set it (artifacts only)."""
    if parameter.name in section:
        return section[parameter.name]
    if parameter.role == READS:
        return f"{parameter.artifact}:latest"
    if parameter.role == WRITES:
        return parameter.artifact
    if parameter.role == OVERRIDES:
        return []
    return MISSING
