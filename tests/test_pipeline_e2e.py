"""The whole pipeline through `mlflow run`, as a user runs it, against a temporary store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.runs import TAG_ERROR, TAG_PARENT, TAG_STEP
from tests.conftest import mlflow_run

pytestmark = pytest.mark.slow
STEPS = ["download", "basic_cleaning", "data_check", "data_split", "train", "test_model"]


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'mlflow.db'}"


def experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    assert found is not None, f"no experiment {name}"
    return found.experiment_id


def pipeline_runs(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs(
        [experiment_id], "tags.`mlpipe.pipeline` = 'true'", order_by=["attributes.start_time ASC"]
    )


def children(client: MlflowClient, experiment_id: str, parent_id: str) -> dict:
    runs = client.search_runs([experiment_id], f"tags.`{TAG_PARENT}` = '{parent_id}'")
    return {r.data.tags[TAG_STEP]: r for r in runs}


@pytest.fixture(scope="module")
def full_run(store_uri: str):
    result = mlflow_run([".", "--env-manager", "local"], store_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_full_pipeline_tracks_every_step_and_artifact(full_run, store_uri: str):
    client = MlflowClient(store_uri)
    experiment_id = experiment(client, "nyc_airbnb")
    [parent] = pipeline_runs(client, experiment_id)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert "mlpipe.git_dirty" in tags and tags["mlpipe.launcher_run_id"]
    assert parent.data.params["model.estimator._target_"] == "sklearn.ensemble.RandomForestRegressor"
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "environment", "step_runs.json"} <= logged
    packages = Path(client.download_artifacts(parent.info.run_id, "environment/packages.txt")).read_text()
    assert "mlflow==3.17.2" in packages.splitlines()
    steps = children(client, experiment_id, parent.info.run_id)
    assert sorted(steps) == sorted(STEPS)
    assert all(r.info.status == "FINISHED" for r in steps.values())

    store = ArtifactStore(experiment_id, client)
    for name in ("raw_data", "clean_data", "trainval_data", "test_data", "model_export"):
        assert [v.ref for v in store.versions(name)] == [f"{name}:v0"]
    assert store.resolve("clean_data:reference").ref == "clean_data:v0"
    # lineage: the test step read the model the train step wrote
    model = store.resolve("model_export:latest")
    assert [r.info.run_id for r in store.producers(model)] == [steps["train"].info.run_id]
    assert [r.info.run_id for r in store.consumers(model)] == [steps["test_model"].info.run_id]

    metrics = steps["test_model"].data.metrics
    assert metrics["mae"] < 40 and metrics["r2"] > 0.45
    assert steps["train"].data.metrics["val_mae"] < 40
    plots = {a.path for a in client.list_artifacts(steps["test_model"].info.run_id, "plots")}
    assert plots == {"plots/predicted_vs_actual.png"}
    launcher = client.get_run(tags["mlpipe.launcher_run_id"])
    assert launcher.data.tags["mlpipe.pipeline_run_id"] == parent.info.run_id


def test_an_unchanged_rerun_reuses_every_step(full_run, store_uri: str):
    result = mlflow_run([".", "--env-manager", "local"], store_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store_uri)
    experiment_id = experiment(client, "nyc_airbnb")
    first, second = pipeline_runs(client, experiment_id)[:2]
    steps = children(client, experiment_id, second.info.run_id)
    originals = children(client, experiment_id, first.info.run_id)
    assert {s: r.data.tags.get("mlpipe.reused_run_id") for s, r in steps.items()} == {
        s: r.info.run_id for s, r in originals.items()
    }
    assert "reused: run" in result.stderr
    assert len(ArtifactStore(experiment_id, client).versions("model_export")) == 1
    # What MLflow's UI shows of a reused step is what the original recorded: datasets, models.
    for step, run in steps.items():
        reused, original = client.get_run(run.info.run_id), client.get_run(originals[step].info.run_id)
        assert names_and_digests(reused) == names_and_digests(original) != set(), step
        assert reused.outputs.model_outputs == original.outputs.model_outputs


def names_and_digests(run) -> set[tuple[str, str]]:
    return {(i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs}


def test_rerunning_unchanged_steps_creates_no_new_versions(full_run, store_uri: str):
    result = mlflow_run(
        [
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=download,basic_cleaning",
            "-P",
            "hydra_options=main.cache=false",
        ],
        store_uri,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same content as raw_data:v0, no new version" in result.stderr + result.stdout
    client = MlflowClient(store_uri)
    store = ArtifactStore(experiment(client, "nyc_airbnb"), client)
    assert len(store.versions("raw_data")) == 1 and len(store.versions("clean_data")) == 1


def test_a_single_component_runs_alone(full_run, store_uri: str, tmp_path: Path):
    result = mlflow_run(
        [
            "components/data_split",
            "--env-manager",
            "local",
            "--experiment-name",
            "nyc_airbnb",
            "-P",
            "input_artifact=clean_data:v0",
            "-P",
            "test_size=0.3",
        ],
        store_uri,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store_uri)
    store = ArtifactStore(experiment(client, "nyc_airbnb"), client)
    assert store.resolve("test_data:latest").ref == "test_data:v1"


def test_bad_source_fails_at_download_and_stops_the_pipeline(store_uri: str, tmp_path: Path):
    missing = tmp_path / "nope.csv"
    result = mlflow_run(
        [".", "--env-manager", "local", "-P", f"hydra_options=dataset=penguins download.source={missing}"],
        store_uri,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: main:")]
    assert errors == [
        f"error: main: step 'download' failed: download: source '{missing}' not found (looked at {missing}); "
        "expected a path, a file:// or http(s):// URL, or pkg://<package>/<file>"
    ]
    client = MlflowClient(store_uri)
    experiment_id = experiment(client, "penguins")
    [parent] = pipeline_runs(client, experiment_id)
    assert parent.info.status == "FAILED" and "download" in parent.data.tags[TAG_ERROR]
    steps = children(client, experiment_id, parent.info.run_id)
    assert list(steps) == ["download"] and steps["download"].info.status == "FAILED"
    assert ArtifactStore(experiment_id, client).versions("raw_data") == []


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (["-P", "steps=download,trian"], "error: main: unknown step(s) 'trian' in main.steps"),
        (["-P", "hydra_options=main.nope=1"], "error: main: unknown config key 'main.nope'"),
        (["-P", "hydra_options=dataset=nope"], "error: main: unknown dataset 'nope'"),
        (
            ["-P", "hydra_options=data_check.kl_threshold=high"],
            "error: main: config data_check: parameter 'kl_threshold' is 'high'; expected a number",
        ),
    ],
)
def test_bad_arguments_stop_before_anything_runs(tmp_path: Path, parameters: list[str], expected: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run([".", "--env-manager", "local", *parameters], uri)
    assert result.returncode != 0
    assert next(line for line in result.stderr.splitlines() if line.startswith("error:")).startswith(expected)
    client = MlflowClient(uri)
    for name in ("nyc_airbnb", "penguins"):
        found = client.get_experiment_by_name(name)
        assert found is None or not client.search_runs([found.experiment_id])


def test_classification_dataset_end_to_end(store_uri: str):
    result = mlflow_run([".", "--env-manager", "local", "-P", "hydra_options=dataset=penguins"], store_uri)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store_uri)
    experiment_id = experiment(client, "penguins")
    parent = [r for r in pipeline_runs(client, experiment_id) if r.info.status == "FINISHED"][-1]
    test = children(client, experiment_id, parent.info.run_id)["test_model"]
    assert test.data.metrics["accuracy"] > 0.9 and test.data.metrics["f1_macro"] > 0.9
    assert test.data.metrics["roc_auc"] > 0.95
    logged = {a.path for a in client.list_artifacts(test.info.run_id)}
    assert "per_label.json" in logged
    assert {a.path for a in client.list_artifacts(test.info.run_id, "plots")} == {
        "plots/confusion_matrix.png"
    }
