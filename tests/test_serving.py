"""`mlflow models serve -m models:/<name>@prod`: same predictions as in process, schema errors as 400."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.data.tables import read_table
from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.server import free_port
from tests.conftest import DATASETS, TrainedStore, load_component, run_component_params, subprocess_env

NAME = "serve_model"


def post(url: str, frame: pd.DataFrame) -> tuple[int, Any]:
    split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))  # dates as text
    body = json.dumps({"dataframe_split": split}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def prod_model(trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pd.DataFrame:
    """Promote the good model under NAME; return rows of the test set as they are stored."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    mlflow.set_tracking_uri(trained_store.uri)
    client = mlflow.MlflowClient(trained_store.uri)
    experiment_id = client.get_experiment_by_name(trained_store.experiment).experiment_id
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    module = load_component("promote")
    module.run(
        run_component_params(
            "promote",
            [
                "--model_name",
                NAME,
                "--candidates",
                f"runs:{trained_store.runs['good']}",
                "--dataset_config",
                str(DATASETS / "nyc_airbnb.yaml"),
            ],
        )
    )
    while mlflow.active_run():
        mlflow.end_run()
    return model_rows(trained_store.uri, trained_store.experiment, tmp_path, 20)


def model_rows(tracking_uri: str, experiment: str, tmp_path: Path, rows: int) -> pd.DataFrame:
    """The first rows of the experiment's latest test set, as they are stored."""
    client = mlflow.MlflowClient(tracking_uri)
    store = ArtifactStore(client.get_experiment_by_name(experiment).experiment_id, client)
    test = read_table(store.download(store.resolve("test_data:latest"), tmp_path / "test"), "test_data")
    return test.head(rows)


@contextmanager
def served(model_uri: str, tracking_uri: str, **env: str) -> Iterator[str]:
    """`mlflow models serve` on 127.0.0.1 and a free port; yield its base URL, then stop it."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the server forks workers: stop the whole group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "server did not answer /ping within 120 s"
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_served_prod_model_matches_in_process_and_rejects_bad_rows(
    trained_store: TrainedStore, prod_model: pd.DataFrame
) -> None:
    with served(f"models:/{NAME}@prod", trained_store.uri) as base:
        status, answer = post(f"{base}/invocations", prod_model)
        assert status == 200, answer
        expected = mlflow.pyfunc.load_model(f"models:/{NAME}@prod").predict(prod_model)
        np.testing.assert_allclose(np.asarray(answer["predictions"]).ravel(), np.asarray(expected).ravel())

        status, answer = post(f"{base}/invocations", prod_model.drop(columns=["minimum_nights"]))
        assert status == 400 and "minimum_nights" in answer["message"], answer
        wrong = prod_model.astype({"minimum_nights": object})
        wrong.loc[wrong.index[0], "minimum_nights"] = "three"
        status, answer = post(f"{base}/invocations", wrong)
        assert status == 400 and "minimum_nights" in answer["message"], answer
