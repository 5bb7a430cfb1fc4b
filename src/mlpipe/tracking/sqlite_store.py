"""The SQLite tracking store as MLflow builds it, except that a damaged database file (cut short,
overwritten) is one line naming the store and what to do, in every process that opens it.

`mlflow run .` opens the store in MLflow's own CLI before any code of this project runs, so the
builder is registered for the `sqlite` scheme through MLflow's tracking-store plugin entry point
(`mlflow.tracking_store` in pyproject.toml). MLflow loads it when `mlflow.tracking` is imported:
nothing here imports MLflow at module level.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import click

from mlpipe.errors import StepError

SQLITE = "sqlite:///"


class DamagedStore(StepError, click.ClickException):
    """A StepError to this project (one `error:` line); MLflow's CLI prints it as `Error: ...`."""


def damage(error: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite error saying the file is not a sound database, if that is what went wrong (a
    locked database or a missing table are operational errors, not damage)."""
    seen: BaseException | None = error
    while seen is not None:
        original = getattr(seen, "orig", seen)  # SQLAlchemy wraps the driver's error
        if isinstance(original, sqlite3.DatabaseError) and not isinstance(original, sqlite3.OperationalError):
            return original
        seen = seen.__cause__ or seen.__context__
    return None


def damaged_store(store_uri: str, error: sqlite3.DatabaseError) -> DamagedStore:
    path = store_uri.removeprefix(SQLITE)
    return DamagedStore(
        f"tracking store {store_uri} cannot be read ({error}): the database file is damaged; restore it "
        f"from a backup, or move it aside (mv {path} {path}.damaged) to start a new, empty store"
    )


def open_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """MLflow's SQLAlchemy store for `store_uri`."""
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    try:
        return _get_sqlalchemy_store(store_uri, artifact_uri)
    except Exception as e:
        found = damage(e)
        if found is None:
            raise
        raise damaged_store(store_uri, found) from e
