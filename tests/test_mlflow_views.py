"""What MLflow's UI shows of the pipeline, read back through MLflow's client: experiments of the
training kind, each step's data as datasets, each trained model as a logged model with its
metrics, run names that say what ran, and the UI itself rendering the runs page."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from mlpipe.data.spec import DatasetSpec
from mlpipe.models import scoring
from mlpipe.pipeline.config import load
from mlpipe.pipeline.orchestrator import Pipeline
from mlpipe.pipeline.step import Step
from mlpipe.tracking import datasets, logged_models, store
from mlpipe.tracking.artifacts import IN, OUT, ArtifactStore
from mlpipe.tracking.runs import TAG_PARENT, TAG_PIPELINE, TAG_STEP, TAG_SWEEP_JOB
from tests.conftest import DATASETS, PROJECT_ROOT, TrainedStore, run_component, subprocess_env
from tests.test_components import clean_args, raw_version
from tests.test_serving import free_port

MODEL = "model_export"


def contexts_of(client: MlflowClient, run_id: str) -> dict[tuple[str, str], str]:
    """(dataset name, digest) -> context, of every dataset input of a run."""
    inputs = client.get_run(run_id).inputs.dataset_inputs
    return {
        (i.dataset.name, i.dataset.digest): {t.key: t.value for t in i.tags}[MLFLOW_DATASET_CONTEXT]
        for i in inputs
    }


def expected_datasets(run: mlflow.entities.Run, contexts: dict[str, str]) -> dict[tuple[str, str], str]:
    """What a step run's artifact tags say it read and wrote, as (name, short digest) -> context."""
    found = {}
    for key, digest in run.data.tags.items():
        for prefix, default in ((IN, "input"), (OUT, "output")):
            name = key.removeprefix(prefix)
            if key.startswith(prefix) and name != MODEL:
                found[(name, datasets.short_digest(digest))] = contexts.get(name, default)
    return found


# -- fast ------------------------------------------------------------------------------------------
def test_experiments_are_of_the_model_training_kind(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    suffix = uuid.uuid4().hex[:8]
    created = store.ensure_experiment(f"made_here-{suffix}")
    assert client.get_experiment(created).tags[store.TAG_KIND] == "custom_model_development"
    older = client.create_experiment(f"made_before-{suffix}")  # as a store made before the tag existed
    other = client.create_experiment(f"genai-{suffix}", tags={store.TAG_KIND: "genai_development"})
    store.ensure_experiment(f"made_before-{suffix}")
    store.ensure_experiment(f"genai-{suffix}")
    assert client.get_experiment(older).tags[store.TAG_KIND] == "custom_model_development"
    assert client.get_experiment(other).tags[store.TAG_KIND] == "genai_development"  # left as set


def test_ui_addresses_open_the_training_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x/mlflow.db")
    monkeypatch.delenv(store.ENV_UI, raising=False)
    assert store.ui_url("3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    monkeypatch.setenv(store.ENV_UI, "http://127.0.0.1:5077/")
    assert (
        store.ui_url("3", "abc")
        == "http://127.0.0.1:5077/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:8080/")
    assert store.ui_url("3").startswith("http://tracking.example:8080/#/experiments/3?")


def test_pipeline_run_names_the_dataset_the_model_and_the_sweep_job(
    tracking_uri: str, tmp_path: Path
) -> None:
    cfg = load(["dataset=penguins"])
    assert Pipeline(cfg, tmp_path).run_name == "penguins · random_forest"
    assert Pipeline(cfg, tmp_path, tags={TAG_SWEEP_JOB: "4"}).run_name == "penguins · random_forest · job 4"


def test_a_step_records_what_it_read_and_wrote_as_datasets(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, nyc_small
) -> None:
    raw_version(store, capsys, tmp_path, nyc_small)
    assert run_component("basic_cleaning", clean_args(), capsys)[0] == 0
    client = store.client
    [run] = client.search_runs([store.experiment_id], f"tags.`{TAG_STEP}` = 'basic_cleaning'")
    raw, clean = store.resolve("raw_data:v0"), store.resolve("clean_data:v0")
    short = datasets.short_digest
    assert contexts_of(client, run.info.run_id) == {
        ("raw_data", short(raw.digest)): "input",
        ("clean_data", short(clean.digest)): "output",
    }
    [written] = [
        i for i in client.get_run(run.info.run_id).inputs.dataset_inputs if i.dataset.name == "clean_data"
    ]
    columns = {c["name"]: c["type"] for c in json.loads(written.dataset.schema)["mlflow_colspec"]}
    assert columns["price"] == "long" and columns["neighbourhood_group"] == "string"
    assert json.loads(written.dataset.source)["uri"] == store.location(clean.run_id, "clean_data", clean.file)
    assert json.loads(written.dataset.profile)["rows"] == clean.metadata["rows"]


def test_metrics_describe_the_model_a_step_made_or_its_one_used_model(
    store: ArtifactStore, tmp_path: Path, nyc_spec: DatasetSpec
) -> None:
    step = Step("compare", "no-run", store, tmp_path, nyc_spec)
    assert step.model_id is None
    step.used_models |= {"m-a", "m-b"}  # compare uses every model it ranks: its metrics are of none
    assert step.model_id is None
    step.used_models.discard("m-b")
    assert step.model_id == "m-a"  # test_model
    step.made_model = "m-new"  # train
    assert step.model_id == "m-new"


# -- on a store the pipeline made ------------------------------------------------------------------
@pytest.mark.slow
def test_every_step_run_records_its_data_as_datasets(trained_store: TrainedStore) -> None:
    client = MlflowClient(trained_store.uri)
    experiment = client.get_experiment_by_name(trained_store.experiment)
    assert experiment.tags[store.TAG_KIND] == "custom_model_development"
    steps = client.search_runs([experiment.experiment_id], f"tags.`{TAG_STEP}` LIKE '%'")
    checked = set()
    for run in steps:
        if run.data.tags[TAG_STEP] in ("download", "basic_cleaning", "data_check", "data_split", "train"):
            contexts = {"trainval_data": "training"} if run.data.tags[TAG_STEP] == "train" else {}
            assert contexts_of(client, run.info.run_id) == expected_datasets(run, contexts), run.info.run_name
            checked.add(run.data.tags[TAG_STEP])
            assert run.info.run_name.startswith(run.data.tags[TAG_STEP])
    assert checked == {"download", "basic_cleaning", "data_check", "data_split", "train"}
    for parent in client.search_runs([experiment.experiment_id], f"tags.`{TAG_PIPELINE}` = 'true'"):
        if TAG_PARENT in parent.data.tags:
            continue  # a comparison's pipeline runs are named after their model
        job = parent.data.tags.get(TAG_SWEEP_JOB)  # sweeps on this store name their jobs
        assert parent.info.run_name == "nyc_airbnb · random_forest" + (f" · job {job}" if job else "")


@pytest.mark.slow
def test_each_train_run_logs_one_model_with_its_validation_metrics(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    client = MlflowClient(trained_store.uri)
    experiment_id = client.get_experiment_by_name(trained_store.experiment).experiment_id
    artifacts = ArtifactStore(experiment_id, client)
    trains = [  # the fixture's two pipeline runs trained once each (other tests train more here)
        run
        for parent in trained_store.runs.values()
        for run in client.search_runs([experiment_id], f"tags.`{TAG_PARENT}` = '{parent}'")
    ]
    assert [r.data.tags[TAG_STEP] for r in trains] == ["train", "train"]
    for run in trains:
        [output] = client.get_run(run.info.run_id).outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        digest = run.data.tags[f"{OUT}{MODEL}"]
        assert model.name == "random_forest" and model.source_run_id == run.info.run_id
        assert model.tags[logged_models.TAG_DIGEST] == digest
        assert model.params["model.estimator.n_estimators"] == run.data.params["model.estimator.n_estimators"]
        linked = {m.key: m for m in model.metrics}
        for key in ("val_mae", "val_rmse", "val_r2"):
            assert linked[key].value == run.data.metrics[key]
            assert linked[key].dataset_name == "trainval_data"
    assert {r.data.params["model.estimator.n_estimators"] for r in trains} == {"8", "2"}

    # The logged model is the export: loaded through models:/<id> it predicts as model_export does.
    spec = DatasetSpec.from_file(DATASETS / "nyc_airbnb.yaml")
    version = artifacts.resolve(f"{MODEL}:latest")
    test = artifacts.resolve("test_data:latest")
    rows = spec.kind.read(artifacts.download(test, tmp_path), "test_data").head(50)
    model = logged_models.find(client, experiment_id, version.digest)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(trained_store.uri)  # what models:/ and runs:/ resolve against
    try:
        from_model = scoring.predict(scoring.load(f"models:/{model.model_id}"), rows, spec).values
        from_artifact = scoring.predict(scoring.load(version.uri), rows, spec).values
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_array_equal(from_model, from_artifact)


@pytest.mark.slow
def test_the_ui_renders_the_pipeline_runs(trained_store: TrainedStore, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; `make test` tries)")
    client = MlflowClient(trained_store.uri)
    experiment_id = client.get_experiment_by_name(trained_store.experiment).experiment_id
    pipelines = client.search_runs(
        [experiment_id], f"tags.`{TAG_PIPELINE}` = 'true'", order_by=["attributes.start_time DESC"]
    )
    newest = next(r for r in pipelines if TAG_PARENT not in r.data.tags)  # a row of the table
    address = f"http://127.0.0.1:{free_port()}"
    ui = subprocess.Popen(
        [sys.executable, "-m", "mlpipe.tracking.ui"],
        cwd=PROJECT_ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=trained_store.uri, MLPIPE_UI_ADDRESS=address),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stdout is not None
        url = f"{address}/#/experiments/{experiment_id}?workflowType=machine_learning"
        assert (
            ui.stdout.readline().strip() == f"experiment '{trained_store.experiment}' (training view): {url}"
        )
        wait_until_up(address, ui)
        headless = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
        page = subprocess.run(
            [browser, *headless, "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert newest.info.run_name in page.stdout, page.stdout[-2000:]
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)


def wait_until_up(address: str, ui: subprocess.Popen[str], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert ui.poll() is None, "the UI stopped before it answered"
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {address}/health in {timeout_s:.0f} s")
