"""End to end: `mlflow run . -P hydra_options="dataset=digits model=cnn"` in a temporary store."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mlpipe.data.kinds.images.files import read_arrays
from mlpipe.models.torch_export import load_pyfunc
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import mlflow_run
from tests.test_serving import served


def model_input_shape(store: ArtifactStore) -> list[int]:
    """(channels, height, width) of the cleaned images, as their metadata says."""
    return store.resolve("trainval_data:latest").metadata["shape"]


@pytest.mark.slow
def test_digits_cnn_pipeline_end_to_end(tracking_uri: str, tmp_path: Path) -> None:
    done = mlflow_run(
        [".", "--env-manager", "local", "-P", "hydra_options=dataset=digits model=cnn model.epochs=8"],
        tracking_uri,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits")
    store = ArtifactStore(experiment.experiment_id, client)
    runs = {r.data.tags.get("mlpipe.step"): r for r in client.search_runs([experiment.experiment_id])}
    steps = ["download", "basic_cleaning", "data_check", "data_split", "train", "test_model"]
    assert all(runs[s].info.status == "FINISHED" for s in steps)

    for name, file in [
        ("raw_data", "images.tar.gz"),
        ("clean_data", "images.npz"),
        ("test_data", "images.npz"),
    ]:
        [version] = store.versions(name)
        assert version.file == file
    assert store.find("clean_data:reference") is not None  # the first checked data became the reference
    [model] = store.versions("model_export")
    assert model.metadata["format"] == "torchscript" and model.metadata["classes"] == [
        str(d) for d in range(10)
    ]
    files = {f.path for f in client.list_artifacts(model.run_id, "model_export/data")}
    assert "model_export/data/model.pth" in files

    train = runs["train"]
    epochs = int(train.data.metrics["epochs_run"])
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        history = client.get_metric_history(train.info.run_id, metric)
        # One per epoch; val_* also at the end (logged once more when linked to the logged model).
        assert len({m.step for m in history}) in (epochs, epochs + 1)
    plots = {f.path for f in client.list_artifacts(train.info.run_id, "plots")}
    assert "plots/learning_curve.png" in plots
    assert train.data.metrics["export_max_abs_diff"] <= 1e-5

    # MLflow's views: the images the network trained on as a dataset with a tensor schema, and
    # the export as a logged model holding the validation accuracy.
    [trained_on] = client.get_run(train.info.run_id).inputs.dataset_inputs
    assert (trained_on.dataset.name, trained_on.dataset.digest) == (
        "trainval_data",
        store.versions("trainval_data")[0].digest[:12],
    )
    pixels = json.loads(json.loads(trained_on.dataset.schema)["mlflow_tensorspec"]["features"])
    assert pixels[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, *model_input_shape(store)]}
    [output] = client.get_run(train.info.run_id).outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.name == "cnn" and logged.tags["mlpipe.digest"] == model.digest
    assert {m.key: m.value for m in logged.metrics}["val_accuracy"] == model.metadata["val_accuracy"]

    test = runs["test_model"]
    assert test.data.metrics["accuracy"] >= 0.95, test.data.metrics
    assert test.data.metrics["fresh_process_max_abs_diff"] <= 1e-5
    assert test.data.tags["model_artifact"] == model.ref
    logged = {f.path for f in client.list_artifacts(test.info.run_id)}
    assert "per_label.json" in logged
    assert "plots/confusion_matrix.png" in {f.path for f in client.list_artifacts(test.info.run_id, "plots")}

    # Promotion works for the image model as for the tabular one: scored on the test images.
    promoted = mlflow_run(
        [
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=promote",
            "-P",
            "hydra_options=dataset=digits model=cnn",
        ],
        tracking_uri,
    )
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    [promote] = client.search_runs([experiment.experiment_id], "tags.`mlpipe.step` = 'promote'")
    assert promote.data.tags["decision"] == "promoted"
    assert promote.data.metrics["candidate_accuracy"] == test.data.metrics["accuracy"]
    assert store.resolve("model_export:prod").digest == model.digest
    prod = client.get_model_version_by_alias("digits", "prod")  # the dataset's registered model
    assert str(prod.version) == "1" and prod.tags["mlpipe.model"] == "cnn"

    # Served like the tabular model, pixel arrays as before (PNG files: test_serving.py).
    pixels = read_arrays(store.download(store.resolve("test_data:latest"), tmp_path), "test_data").images
    batch = pixels[:8].astype(np.float32)
    expected = np.asarray(load_pyfunc(store.download(model, tmp_path / "model")).predict(batch))
    with served("models:/digits@prod", tracking_uri) as base:
        request = urllib.request.Request(
            f"{base}/invocations",
            json.dumps({"inputs": batch.tolist()}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    np.testing.assert_allclose(np.asarray(answer["predictions"]), expected, atol=1e-5)
