"""`mlflow models serve -m models:/<name>@prod`: same predictions as in process, schema errors as 400."""

from __future__ import annotations

import base64
import io
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
from sklearn.datasets import load_digits

from mlpipe.data.tables import read_table
from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.server import free_port
from tests.conftest import (
    DATASETS,
    TrainedStore,
    load_component,
    run_component_params,
    run_main,
    subprocess_env,
)

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


def png_base64(pixels: np.ndarray) -> str:
    """(H, W) or (H, W, 3) pixels 0-255 as a PNG file, base64-encoded as a client sends it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def post_json(url: str, payload: dict) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_a_served_digits_model_takes_png_files_of_any_size_gray_or_rgb(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = "main.steps='download,basic_cleaning,data_split,train,promote'"  # the data check is not tested
    fast = ["dataset=digits", "model=cnn_small", "model.epochs=2", "main.executor=inprocess"]
    done = run_main([*fast, steps], uri, tmp_path, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr[-3000:]
    digits = load_digits()
    gray = digits.images[0] * 255 / 16  # an 8x8 zero, as the training images are
    big = np.kron(digits.images[1] * 255 / 16, np.ones((2, 2)))  # a one, 16x16
    rgb = np.stack([big, big * 0.9, big * 0.8], axis=-1)
    rows = pd.DataFrame({"image": [png_base64(rgb), png_base64(gray)]})
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/digits@prod")
    expected, from_pixels = model.predict(rows), model.predict(gray[None, None].astype(np.float32))
    # No pickle permission: the pyfunc loads the TorchScript file with torch.jit.load.
    with served("models:/digits@prod", uri, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false") as base:
        url = f"{base}/invocations"
        for row in range(2):  # a 16x16 RGB PNG, an 8x8 grayscale PNG, each alone
            payload = {"dataframe_split": {"columns": ["image"], "data": [[rows["image"][row]]]}}
            status, answer = post_json(url, payload)
            assert status == 200, answer
            np.testing.assert_allclose(answer["predictions"][0], expected[row], atol=1e-5)
            assert sum(answer["predictions"][0]) == pytest.approx(1.0, abs=1e-4)
        status, answer = post_json(
            url, {"dataframe_split": {"columns": ["image"], "data": rows.values.tolist()}}
        )
        assert status == 200 and np.allclose(answer["predictions"], expected, atol=1e-5), answer
        status, answer = post_json(url, {"inputs": [[gray.tolist()]]})  # pixels (N, C, H, W), as before
        assert status == 200 and np.allclose(answer["predictions"], from_pixels, atol=1e-5), answer
        status, answer = post_json(
            url, {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}}
        )
        assert status == 400 and "row 1 of column 'image': not a readable PNG or JPEG" in answer["message"]
