"""Where the project lives, and the default tracking store inside it."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPONENTS_DIR = PROJECT_ROOT / "components"
CONF_DIR = PROJECT_ROOT / "conf"


def default_tracking_uri() -> str:
    return f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` always wins; otherwise the SQLite file at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store sit next to it; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def resolve_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """An absolute path: relative ones are taken from `base` (the project root by default)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ((base or PROJECT_ROOT) / p).resolve()
