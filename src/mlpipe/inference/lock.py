"""One inference run per dataset and model at a time: a row per (dataset, model) in the ledger's
database (`inference_lock`), so it holds wherever the ledger is shared (SQLite on one machine,
PostgreSQL for a team) and needs nothing else.

A run inserts the rows of all its models in one transaction (the primary key refuses a second
holder), refreshes their `heartbeat` while it scores, and deletes them when it ends. A run that
finds one held waits until it is free (`inference.on_busy=wait`) or ends at once, scoring nothing
(`skip`); both say which run holds it. A lock whose holder is gone does not block: on the same
host, a pid that no longer runs frees it at once; from another host, a heartbeat older than
`STALE_AFTER` does (the holder would have refreshed it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Integer, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlpipe import processes
from mlpipe.inference.ledger import Ledger, metadata

LOCK_TABLE = "inference_lock"
ON_BUSY = ("wait", "skip")
HEARTBEAT = timedelta(seconds=10)  # how often a holder refreshes its rows
STALE_AFTER = timedelta(minutes=2)  # a heartbeat this old: its holder is gone (another host)
POLL_SECONDS = 1.0  # how often a waiting run tries again

lock_table = Table(
    LOCK_TABLE,
    metadata,
    Column("dataset", String(200), primary_key=True),
    Column("model", String(200), primary_key=True, comment="the model as inference.models names it"),
    Column("run_id", String(64), nullable=False, comment="the MLflow run that holds it"),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("heartbeat", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Holder:
    model: str
    run_id: str
    pid: int
    host: str
    since: datetime
    heartbeat: datetime

    def describe(self, now: datetime) -> str:
        return (
            f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since:%H:%M:%S} UTC, "
            f"last heard {int((now - self.heartbeat).total_seconds())} s ago)"
        )

    def gone(self, now: datetime) -> str:
        """Why this holder no longer holds anything ("" while it may)."""
        if self.host == socket.gethostname() and not processes.alive(self.pid):
            return "its process no longer runs"
        if now - self.heartbeat > STALE_AFTER:
            return f"no heartbeat for {int((now - self.heartbeat).total_seconds())} s"
        return ""


def utc(moment: datetime) -> datetime:
    """SQLite hands DateTimes back naive (they were written as UTC), PostgreSQL aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Lock:
    def __init__(self, ledger: Ledger, dataset: str, models: Sequence[str], run_id: str) -> None:
        self.ledger, self.dataset, self.models, self.run_id = ledger, dataset, sorted(models), run_id
        self.engine = ledger.engine
        ledger.create(lock_table)

    def what(self) -> str:
        models = ", ".join(f"'{m}'" for m in self.models)
        return f"the ledger of dataset '{self.dataset}' for model(s) {models}"

    def take(self) -> list[Holder]:
        """Insert this run's rows (all or none); the holders found when another run has them."""
        now = datetime.now(UTC)
        rows = [
            {
                "dataset": self.dataset,
                "model": model,
                "run_id": self.run_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": now,
                "heartbeat": now,
            }
            for model in self.models
        ]
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(lock_table), rows)
            return []
        except IntegrityError:
            pass
        except SQLAlchemyError as e:
            self.ledger.fail("cannot be written", e)
        query = select(lock_table).where(
            lock_table.c.dataset == self.dataset, lock_table.c.model.in_(self.models)
        )
        try:
            with self.engine.connect() as connection:
                found = connection.execute(query).mappings().all()
        except SQLAlchemyError as e:
            self.ledger.fail("cannot be read", e)
        return [
            Holder(r["model"], r["run_id"], r["pid"], r["host"], utc(r["since"]), utc(r["heartbeat"]))
            for r in found
        ]

    def release_stale(self, holder: Holder) -> None:
        """Delete a gone holder's row (by its run: a waiter that took it over first keeps its own)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    delete(lock_table).where(
                        lock_table.c.dataset == self.dataset,
                        lock_table.c.model == holder.model,
                        lock_table.c.run_id == holder.run_id,
                    )
                )
        except SQLAlchemyError as e:
            self.ledger.fail("cannot be written", e)

    def acquire(self, on_busy: str, log: logging.Logger) -> bool:
        """Hold the lock (True), or, with on_busy=skip, find it held (False); waits otherwise."""
        waiting_for: set[str] = set()
        started = time.monotonic()
        while True:
            holders = self.take()
            if not holders:
                waited = f", after waiting {time.monotonic() - started:.0f} s" if waiting_for else ""
                log.info(
                    "%s is held by this run (pid %d on %s) until it ends%s",
                    self.what(),
                    os.getpid(),
                    socket.gethostname(),
                    waited,
                )
                return True
            now = datetime.now(UTC)
            gone = [(h, h.gone(now)) for h in holders]
            for holder, reason in gone:
                if reason:
                    log.warning(
                        "%s: the lock left by %s is taken over: %s", self.what(), holder.describe(now), reason
                    )
                    self.release_stale(holder)
            if any(reason for _, reason in gone):
                continue
            shown = "; ".join(h.describe(now) for h in holders)
            if on_busy == "skip":
                log.warning("%s is held by %s: nothing scored (inference.on_busy=skip)", self.what(), shown)
                return False
            if {h.run_id for h in holders} != waiting_for:
                log.info(
                    "%s is held by %s: waiting until it is free (inference.on_busy=wait)", self.what(), shown
                )
                waiting_for = {h.run_id for h in holders}
            time.sleep(POLL_SECONDS)

    def heartbeat(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(lock_table)
                .where(lock_table.c.dataset == self.dataset, lock_table.c.run_id == self.run_id)
                .values(heartbeat=datetime.now(UTC))
            )

    def release(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(lock_table).where(
                    lock_table.c.dataset == self.dataset, lock_table.c.run_id == self.run_id
                )
            )


@contextmanager
def held(
    ledger: Ledger, dataset: str, models: Sequence[str], run_id: str, on_busy: str, log: logging.Logger
) -> Iterator[bool]:
    """While the block runs, this run alone scores `models` on `dataset` (True); False, with
    on_busy=skip, when another run does."""
    lock = Lock(ledger, dataset, models, run_id)
    if not lock.acquire(on_busy, log):
        yield False
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT.total_seconds()):
            try:
                lock.heartbeat()
            except SQLAlchemyError as e:  # the next beat may get through; the run goes on
                log.warning("the ledger lock's heartbeat failed: %s", str(e).splitlines()[0])

    beating = threading.Thread(target=beat, name="ledger-lock", daemon=True)
    beating.start()
    try:
        yield True
    finally:
        stop.set()
        beating.join()
        try:
            lock.release()
        except SQLAlchemyError as e:
            log.warning("the ledger lock could not be released (%s): the next run takes it over", e)
