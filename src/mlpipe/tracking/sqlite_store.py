"""The SQLite tracking (and model registry) store as MLflow builds it, except that

- it is built by one process at a time per database file: MLflow creates and migrates the tables
  of a new file in whichever process opens it first, and two doing that at once (two `mlflow run
  .` started together, the jobs of a parallel sweep) run the same migration twice, one crashing
  (`duplicate column name: step`). Opening a store that exists takes milliseconds, so the lock
  costs nothing afterwards;
- a damaged database file (cut short, overwritten) is one line naming the store and what to do.

Both hold in every process that opens the store: `mlflow run .` opens it in MLflow's own CLI
before any code of this project runs, so the builders are registered for the `sqlite` scheme
through MLflow's store plugin entry points (`mlflow.tracking_store`, `mlflow.model_registry_store`
in pyproject.toml). MLflow loads them when `mlflow.tracking` is imported: nothing here imports
MLflow at module level.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def database_file(store_uri: str) -> str | None:
    """The file of a SQLite store URI; None for an in-memory database or another kind of store."""
    database = store_uri.removeprefix(SQLITE).split("?", 1)[0] if store_uri.startswith(SQLITE) else ""
    return None if database in ("", ":memory:") else database


def lock_path(store_uri: str) -> str | None:
    """The lock file of a SQLite database (None for an in-memory one): in the temporary folder,
    named by the database's absolute path, so that every spelling of the URI shares it."""
    database = database_file(store_uri)
    if database is None:
        return None
    digest = hashlib.sha256(os.path.realpath(database).encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"mlpipe-sqlite-{digest}.lock")


@contextmanager
def one_at_a_time(store_uri: str) -> Iterator[None]:
    path = lock_path(store_uri)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def open_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """MLflow's SQLAlchemy tracking store for `store_uri`."""
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    return built(store_uri, lambda: _get_sqlalchemy_store(store_uri, artifact_uri))


def open_registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """MLflow's SQLAlchemy model registry store for `store_uri`."""
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store

    return built(store_uri, lambda: _get_sqlalchemy_store(store_uri))


def built(store_uri: str, build: Callable[[], Any]) -> Any:
    try:
        with one_at_a_time(store_uri):
            return build()
    except Exception as e:
        found = damage(e)
        if found is None:
            raise
        raise damaged_store(store_uri, found) from e


def has_experiment(store_uri: str, name: str) -> bool | None:
    """Whether the SQLite store at `store_uri` holds an experiment called `name`: False when the
    file does not exist; None when that cannot be told without MLflow (not a SQLite file, no tables
    yet, another schema). A read-only query of a few milliseconds, where importing MLflow and
    opening the store takes a second or more."""
    path = database_file(store_uri)
    if path is None:
        return None
    if not os.path.exists(path):
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone() is not None
    except sqlite3.Error:
        return None
