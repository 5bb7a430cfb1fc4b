"""Any two processes can start on the same fresh SQLite store: MLflow creates and migrates its
tables in one of them at a time (the sqlite store plugin, src/mlpipe/tracking/sqlite_store.py),
instead of two running the same migration and one crashing (`duplicate column name`)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking import sqlite_store
from tests.conftest import mlflow_run

OPEN_WHEN_TOLD = """
import os, sys, time
from mlflow.tracking import MlflowClient
import mlflow.store.tracking.sqlalchemy_store  # imported before the agreed moment, not after
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
MlflowClient(sys.argv[1]).search_experiments()
"""


def test_processes_opening_a_fresh_store_at_the_same_moment_all_succeed(tmp_path: Path):
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, uri, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for process in started:  # every one has imported MLflow: now all open the store at once
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in started]
    assert [p.returncode for p in started] == [0, 0, 0], "\n".join(e[-1500:] for e in errors)


def test_every_spelling_of_a_database_shares_one_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert sqlite_store.lock_path("sqlite:///mlflow.db") == sqlite_store.lock_path(
        f"sqlite:///{tmp_path}/./mlflow.db"
    )
    assert sqlite_store.lock_path("sqlite://") is None
    assert sqlite_store.lock_path("sqlite:///:memory:") is None


@pytest.mark.slow
def test_two_mlflow_runs_started_together_on_a_fresh_store_both_succeed(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [".", "--env-manager", "local", "-P", "steps=download", "-P", "hydra_options=dataset=penguins"]
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: mlflow_run(args, uri), range(2)))
    for result in done:
        assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    pipelines = client.search_runs([experiment], "tags.`mlpipe.pipeline` = 'true'")
    assert [r.info.status for r in pipelines] == ["FINISHED", "FINISHED"]


def test_whether_a_store_holds_the_experiment_is_told_without_mlflow(tmp_path: Path) -> None:
    """What main.py reads before importing MLflow, to start the step workers' warm parent early."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sqlite_store.has_experiment(uri, "penguins") is False  # no file yet
    MlflowClient(uri).create_experiment("penguins")
    assert sqlite_store.has_experiment(uri, "penguins") is True
    assert sqlite_store.has_experiment(uri, "nyc_airbnb") is False
    (tmp_path / "other.db").write_text("not a database")
    assert sqlite_store.has_experiment(f"sqlite:///{tmp_path / 'other.db'}", "penguins") is None
    assert sqlite_store.has_experiment("http://127.0.0.1:5000", "penguins") is None
