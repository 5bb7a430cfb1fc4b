"""The inference ledger: a database table with one row per dataset, model and row key, saying from
which content (a hash of the row's model input), by which model version and when the row was first
and last scored, and the prediction it got.

Any SQLAlchemy URL works: by default the project's database when `MLPIPE_DATABASE_URL` names one
(`make server` does), else a SQLite file (`inference_ledger.db` under the results root);
PostgreSQL for a team (`postgresql://user@host/db`, through psycopg). The table is created
on first use. Each batch is recorded in one transaction, as an upsert on the primary key, so a run
killed half-way leaves whole batches behind, never half of one, and a row is never recorded twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.tracking.sqlite_store import damage

TABLE = "inference_ledger"
DEFAULT_FILE = "inference_ledger.db"
KEY_CHUNK = 5000  # keys per IN (...) lookup: under SQLite's limit on bound parameters
UPSERT_DIALECTS = ("sqlite", "postgresql")  # INSERT ... ON CONFLICT DO UPDATE; others: delete, insert

metadata = MetaData()
table = Table(
    TABLE,
    metadata,
    Column("dataset", String(200), primary_key=True, comment="dataset name (the dataset config's)"),
    Column("model", String(200), primary_key=True, comment="the model as inference.models names it"),
    Column("row_key", String(500), primary_key=True, comment="the row's key columns (|-joined) or path"),
    Column("content_hash", String(64), nullable=False, comment="hash of the row's model input"),
    Column("model_version", String(500), nullable=False, comment="the version that scored it"),
    Column("prediction", Text, nullable=False, comment="the predicted value or class, as text"),
    Column("probabilities", Text, nullable=True, comment="JSON {class: probability}, classifiers"),
    Column("first_scored", DateTime(timezone=True), nullable=False),
    Column("last_scored", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64), nullable=False, comment="the MLflow run that last scored it"),
)
PRIMARY_KEY = ["dataset", "model", "row_key"]
UPDATED = ["content_hash", "model_version", "prediction", "probabilities", "last_scored", "run_id"]
COLUMNS = [c.name for c in table.columns]
# A Scored row sits in the table's columns as (dataset, model, key, hash, version, prediction,
# probabilities, first, last, run): `record` writes the tuples in this order.
assert COLUMNS[2:4] == ["row_key", "content_hash"] and COLUMNS[5:7] == ["prediction", "probabilities"]
PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}  # the driver's parameter style
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy keeps a DateTime in SQLite (read back alike)


def upsert_sql(placeholder: str) -> str:
    """INSERT ... ON CONFLICT DO UPDATE, which SQLite and PostgreSQL spell alike, written from the
    table's columns; first_scored is left as it was."""
    marks = ", ".join([placeholder] * len(COLUMNS))
    updates = ", ".join(f"{c} = excluded.{c}" for c in UPDATED)
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(PRIMARY_KEY)}) DO UPDATE SET {updates}"
    )


class Scored(NamedTuple):
    """One row's prediction, as the ledger records it."""

    key: str
    content_hash: str
    prediction: str
    probabilities: str | None  # JSON


def default_uri() -> str:
    return os.environ.get(project.ENV_DATABASE) or f"sqlite:///{project.results_root() / DEFAULT_FILE}"


def chunks(items: Sequence[str], size: int = KEY_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ledger:
    def __init__(self, uri: str, where: str) -> None:
        self.where = where
        try:
            url = make_url(uri)
        except ArgumentError as e:
            raise StepError(
                f"{where}: inference.ledger_uri '{uri}' is not a database URL; expected a SQLAlchemy "
                "URL such as sqlite:////path/ledger.db or postgresql://user@host/db"
            ) from e
        self.shown = url.render_as_string(hide_password=True)
        # the SQLite file, if the ledger is one: what a damaged ledger's line says to move aside
        self.file: str | None = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self.file = str(Path(url.database).resolve())
            Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(url, **self.engine_options(url.get_backend_name()))
            if url.get_backend_name() == "sqlite":
                event.listen(self.engine, "connect", sqlite_pragmas)
        except (SQLAlchemyError, ImportError) as e:
            self.fail("cannot be opened", e)
        self.create(table)

    def create(self, *tables: Table) -> None:
        """Create the tables the database lacks. Two runs on a new ledger may both try: the
        second's CREATE fails on the table the first made, and the next look finds it."""
        for attempt in (1, 2):
            try:
                metadata.create_all(self.engine, tables, checkfirst=True)
                return
            except SQLAlchemyError as e:
                if attempt == 2 or damage(e) is not None:
                    self.fail("cannot be opened", e)

    @staticmethod
    def engine_options(backend: str) -> dict[str, Any]:
        # SQLite: wait for a writer (another run, a reader's lock) rather than fail at once.
        return {"connect_args": {"timeout": 60}} if backend == "sqlite" else {"pool_pre_ping": True}

    def fail(self, what: str, error: BaseException) -> NoReturn:
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        cause = lines[0] if lines else repr(error)
        damaged = damage(error)
        if damaged is not None and self.file is not None:
            raise StepError(
                f"{self.where}: ledger {self.shown} {what} ({damaged}): the database file is damaged; "
                f"restore it from a backup, or move it aside (mv {self.file} {self.file}.damaged) to "
                "start a new ledger, which scores every row again on the next run"
            ) from error
        raise StepError(f"{self.where}: ledger {self.shown} {what}: {cause}") from error

    def known(self, dataset: str, model: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """row key -> (content hash, model version), for the keys the ledger has."""
        columns = [table.c.row_key, table.c.content_hash, table.c.model_version]
        return {row[0]: (row[1], row[2]) for row in self.rows(columns, dataset, model, keys)}

    def keys(self, dataset: str, model: str) -> set[str]:
        """Every key the ledger holds for this dataset and model."""
        query = select(table.c.row_key).where(table.c.dataset == dataset, table.c.model == model)
        try:
            with self.engine.connect() as connection:
                return set(connection.execute(query).scalars())
        except SQLAlchemyError as e:
            self.fail("cannot be read", e)

    def forget(self, dataset: str, model: str, keys: Sequence[str]) -> None:
        """Delete these keys' rows (in one transaction)."""
        try:
            with self.engine.begin() as connection:
                for part in chunks(keys):
                    connection.execute(
                        delete(table).where(
                            table.c.dataset == dataset, table.c.model == model, table.c.row_key.in_(part)
                        )
                    )
        except SQLAlchemyError as e:
            self.fail("cannot be written", e)

    def entries(self, dataset: str, model: str, keys: Sequence[str]) -> pd.DataFrame:
        """Everything the ledger has on these keys, one row per key."""
        names = [c.name for c in table.columns if c.name not in ("dataset", "model")]
        rows = [tuple(row) for row in self.rows([table.c[n] for n in names], dataset, model, keys)]
        frame = pd.DataFrame.from_records(rows, columns=names)
        for column in ("first_scored", "last_scored"):
            # SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones.
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def rows(self, columns: list[Any], dataset: str, model: str, keys: Sequence[str]) -> Iterator[Any]:
        try:
            with self.engine.connect() as connection:
                for part in chunks(keys):
                    query = select(*columns).where(
                        table.c.dataset == dataset, table.c.model == model, table.c.row_key.in_(part)
                    )
                    yield from connection.execute(query)
        except SQLAlchemyError as e:
            self.fail("cannot be read", e)

    def record(
        self, dataset: str, model: str, version: str, run_id: str, scored: Sequence[Scored], when: datetime
    ) -> None:
        """One batch, in one transaction: new keys inserted, known ones updated (first_scored kept)."""
        if not scored:
            return
        when = when.astimezone(UTC)
        try:
            with self.engine.begin() as connection:
                if self.upsert_statement:
                    stamp = when.strftime(SQLITE_TIME) if self.dialect == "sqlite" else when
                    rows = [(dataset, model, *s[:2], version, *s[2:], stamp, stamp, run_id) for s in scored]
                    connection.exec_driver_sql(self.upsert_statement, rows)
                else:
                    self.delete_and_insert(connection, dataset, model, version, run_id, scored, when)
        except SQLAlchemyError as e:
            self.fail("cannot be written", e)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def upsert_statement(self) -> str:
        """The upsert as one statement for the driver, where the database has one ("" where not).
        Run as the driver's executemany: SQLAlchemy's processing of each row would cost more
        than the insert itself."""
        placeholder = PLACEHOLDERS.get(self.engine.dialect.paramstyle)
        return upsert_sql(placeholder) if self.dialect in UPSERT_DIALECTS and placeholder else ""

    def delete_and_insert(
        self,
        connection: Connection,
        dataset: str,
        model: str,
        version: str,
        run_id: str,
        scored: Sequence[Scored],
        when: datetime,
    ) -> None:
        """The upsert for databases without one: the known keys' rows deleted and inserted again,
        each keeping when it was first scored."""
        first: dict[str, datetime] = {}
        for part in chunks([s.key for s in scored]):
            where = (table.c.dataset == dataset, table.c.model == model, table.c.row_key.in_(part))
            known = connection.execute(select(table.c.row_key, table.c.first_scored).where(*where))
            first.update({key: at for key, at in known})
            connection.execute(delete(table).where(*where))
        rows = [
            (dataset, model, *s[:2], version, *s[2:], first.get(s.key, when), when, run_id) for s in scored
        ]
        connection.execute(insert(table), [dict(zip(COLUMNS, row, strict=True)) for row in rows])

    def close(self) -> None:
        self.engine.dispose()


def sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Readers (a dashboard, the next run) do not block the writer, nor it them."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def probabilities_json(classes: Sequence[Any], row: Sequence[float]) -> str:
    return json.dumps({str(c): float(p) for c, p in zip(classes, row, strict=True)})
