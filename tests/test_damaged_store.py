"""A damaged tracking database (mlflow.db cut short) is one line naming the store and what to do,
wherever it is opened: `mlflow run .` (MLflow's own CLI opens it first), main.py, a component."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from mlpipe.tracking import store as tracking_store
from tests.conftest import NYC_CSV, PROJECT_ROOT, mlflow_run, run_component, subprocess_env


@pytest.fixture
def damaged(tracking_uri: str, tmp_path: Path) -> Path:
    """A copy of a real store, cut to half its size."""
    tracking_store.ensure_experiment("damaged-store-source")  # the session store exists
    data = Path(tracking_uri.removeprefix("sqlite:///")).read_bytes()
    path = tmp_path / "mlflow.db"
    path.write_bytes(data[: len(data) // 2])
    return path


def expected(path: Path) -> str:
    return (
        f"tracking store sqlite:///{path} cannot be read (database disk image is malformed): the "
        f"database file is damaged; restore it from a backup, or move it aside (mv {path} {path}.damaged) "
        "to start a new, empty store"
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_mlflow_run_on_a_damaged_store_is_one_line(damaged: Path) -> None:
    done = mlflow_run([".", "--env-manager", "local", "-P", "steps=download"], f"sqlite:///{damaged}")
    assert done.returncode == 1
    assert lines(done.stderr) == [f"Error: {expected(damaged)}"]


def test_main_on_a_damaged_store_is_one_line(damaged: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "main.py"), "main.steps=download"],
        cwd=PROJECT_ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{damaged}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert lines(done.stderr) == [f"error: {expected(damaged)}"]


def test_a_component_on_a_damaged_store_is_one_line(
    damaged: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{damaged}")
    mlflow.set_tracking_uri(f"sqlite:///{damaged}")
    try:
        code, err = run_component("get_data", ["--source", str(NYC_CSV)], capsys)
    finally:
        mlflow.set_tracking_uri(previous)  # the later tests' store
    assert code == 1
    assert lines(err) == [f"error: download: {expected(damaged)}"]
