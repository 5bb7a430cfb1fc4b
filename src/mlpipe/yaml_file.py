"""Reading a YAML file a user writes: a syntax error is one line naming the file, the line and
the column, not the parser's traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlpipe.errors import StepError

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the same, faster


def syntax_error(where: str, error: yaml.YAMLError) -> StepError:
    """`where: YAML syntax error at line L, column C: what the parser expected (while ...)`."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return StepError(f"{where}: YAML syntax error: {error}")
    mark = error.problem_mark
    context = ""
    if error.context and error.context_mark is not None:
        context = f" ({error.context} at line {error.context_mark.line + 1})"
    at = f"line {mark.line + 1}, column {mark.column + 1}"
    return StepError(f"{where}: YAML syntax error at {at}: {error.problem}{context}")


def load_yaml(path: Path, where: str | None = None) -> Any:
    """The file's content; `where` (default: the path) starts the error line."""
    try:
        return yaml.load(path.read_text(), Loader=LOADER)  # a safe loader
    except yaml.YAMLError as e:
        raise syntax_error(where or str(path), e) from None
