"""One inference run per dataset and model at a time on a ledger: a second run waits (or, with
inference.on_busy=skip, ends scoring nothing) and says so; a lock left by a process that is gone
does not block."""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from mlpipe.inference import lock as lock_module
from mlpipe.inference.ledger import Ledger
from mlpipe.inference.lock import LOCK_TABLE, held, lock_table
from tests.conftest import COMPONENTS_DIR, NYC_CSV, TrainedStore, subprocess_env
from tests.test_inference import Inference, counts, ledger_rows, postgres_uri  # noqa: F401

ROWS = 2000


def lock_rows(ledger: Path) -> int:
    with sqlite3.connect(ledger) as connection:
        try:
            return connection.execute(f"SELECT count(*) FROM {LOCK_TABLE}").fetchone()[0]
        except sqlite3.OperationalError:  # no table yet
            return 0


def dead_pid() -> int:
    """The pid of a process that ran and is gone (reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def leave_lock(book: Ledger, dataset: str, pid: int, host: str, heartbeat: datetime) -> None:
    """A lock row as a run that held it left it."""
    with book.engine.begin() as connection:
        row = {"dataset": dataset, "model": "prod", "run_id": "gone", "pid": pid, "host": host}
        connection.execute(insert(lock_table), [{**row, "since": heartbeat, "heartbeat": heartbeat}])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    if backend == "postgresql":
        uri = request.getfixturevalue("postgres_uri")
    book = Ledger(uri, "inference")
    log = logging.getLogger("inference")
    dataset = f"d{time.time_ns()}"  # the PostgreSQL server is the session's
    lock_module.Lock(book, dataset, ["prod"], "r0")  # creates the table
    now = datetime.now(UTC)

    leave_lock(book, dataset, dead_pid(), socket.gethostname(), now)  # this host, pid gone
    with caplog.at_level(logging.INFO), held(book, dataset, ["prod"], "r1", "skip", log) as ours:
        assert ours
    assert "the lock left by run gone (pid" in caplog.text and "its process no longer runs" in caplog.text

    # another host: its pid says nothing here; a heartbeat too old says it is gone
    leave_lock(book, dataset, 1, "elsewhere.example", now - lock_module.STALE_AFTER - timedelta(seconds=5))
    with held(book, dataset, ["prod"], "r2", "skip", log) as ours:
        assert ours
    assert "no heartbeat for" in caplog.text

    # a live holder (this process) is waited for, or skipped
    with held(book, dataset, ["prod"], "r3", "skip", log) as ours:
        assert ours
        with held(book, dataset, ["prod", "challenger"], "r4", "skip", log) as theirs:
            assert not theirs
    assert (
        "is held by run r3 (pid" in caplog.text and "nothing scored (inference.on_busy=skip)" in caplog.text
    )
    with held(book, dataset, ["challenger"], "r5", "skip", log) as ours:
        assert ours  # r4 took nothing: all of its models or none
    book.close()


def start(inference: Inference, source: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The inference component as its own process, its log in `log`."""
    env = subprocess_env(
        MLFLOW_TRACKING_URI=inference.uri, MLFLOW_EXPERIMENT_ID=inference.store.experiment_id
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(COMPONENTS_DIR / "batch_inference" / "run.py"),
                *inference.argv(source, *extra),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.slow
def test_two_runs_at_once_on_one_ledger_score_each_row_once(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inference = Inference(trained_store, monkeypatch, tmp_path, "locked_model")
    inference.registry.promote("good")
    source = tmp_path / "listings.csv"
    pd.read_csv(NYC_CSV).head(ROWS).to_csv(source, index=False)
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "waits", "skips")}
    # small batches: the first run holds the ledger for a while
    first = start(inference, source, logs["first"], "--batch_size", "2")
    others: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 120
        while not (inference.ledger.exists() and lock_rows(inference.ledger)) and time.monotonic() < deadline:
            assert first.poll() is None, logs["first"].read_text()[-3000:]
            time.sleep(0.05)
        waits = start(inference, source, logs["waits"])
        skips = start(inference, source, logs["skips"], "--on_busy", "skip")
        others = [waits, skips]
        assert skips.wait(timeout=300) == 0, logs["skips"].read_text()[-3000:]
        assert first.poll() is None, "the first run ended before the others reached the lock"
        assert waits.wait(timeout=300) == 0, logs["waits"].read_text()[-3000:]
        assert first.wait(timeout=300) == 0, logs["first"].read_text()[-3000:]
    finally:
        for process in (first, *others):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    text = {name: path.read_text() for name, path in logs.items()}
    held_by = "the ledger of dataset 'nyc_airbnb' for model(s) 'prod' is held by"
    assert f"{held_by} this run (pid {first.pid} on " in text["first"]
    assert (
        f"{held_by} run " in text["waits"]
        and "waiting until it is free (inference.on_busy=wait)" in text["waits"]
    )
    assert f"{held_by} this run (pid {waits.pid} on " in text["waits"] and ", after waiting " in text["waits"]
    assert f"{held_by} run " in text["skips"] and "nothing scored (inference.on_busy=skip)" in text["skips"]

    runs = inference.registry.client.search_runs(
        [inference.store.experiment_id],
        "tags.`mlpipe.step` = 'inference'",
        order_by=["attributes.start_time DESC"],
        max_results=3,
    )
    skipped = [r for r in runs if "mlpipe.skipped" in r.data.tags]
    assert len(skipped) == 1 and skipped[0].info.status == "FINISHED"
    assert not inference.store.outputs_of(skipped[0]) and "rows_scored" not in skipped[0].data.metrics
    assert sorted(counts(r)["rows_scored"] for r in runs if r not in skipped) == [0, ROWS]
    ledger = ledger_rows(inference.ledger)
    assert len(ledger) == ROWS and ledger["run_id"].nunique() == 1  # each row scored once, by one run
    assert lock_rows(inference.ledger) == 0  # released
