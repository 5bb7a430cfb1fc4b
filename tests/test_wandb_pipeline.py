"""The whole pipeline with W&B mirroring, through `mlflow run .` as a user starts it: offline, every
step is a W&B run whose records (read back from its `.wandb` file) match what went to MLflow;
disabled, nothing is written; online with no network, it stops before any step."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking.runs import TAG_STEP
from tests.conftest import mlflow_run
from tests.wandb_records import files_containing, isolate_wandb, offline_runs

pytestmark = pytest.mark.slow
FAKE_KEY = "f" * 40  # present in the environment, so it must appear nowhere


def pipeline_runs(experiment: str) -> dict[str, str]:
    """step name -> MLflow run id of the child runs."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], f"tags.`{TAG_STEP}` LIKE '%'")
    return {r.data.tags[TAG_STEP]: r.info.run_id for r in runs}


def test_offline_pipeline_mirrors_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tracking_uri: str
) -> None:
    isolate_wandb(tmp_path / "wandb", monkeypatch)
    runs_dir = tmp_path / "wandb-runs"
    options = f"tracking.wandb.mode=offline tracking.wandb.dir={runs_dir} main.experiment_name=e2e"
    result = mlflow_run(
        [".", "--env-manager", "local", "-P", f"hydra_options={options} hydra.run.dir={tmp_path / 'out'}"],
        fresh_tracking_uri,
        WANDB_API_KEY=FAKE_KEY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mlpipe.wandb | W&B offline: runs are written under {runs_dir}/wandb" in result.stderr

    mlflow_ids = pipeline_runs("nyc_airbnb")
    runs = {r.job_type: r for r in offline_runs(runs_dir)}
    steps = ["download", "basic_cleaning", "data_check", "data_split", "train", "test_model"]
    assert sorted(runs) == sorted(steps)
    for step in steps:
        run = runs[step]
        assert (run.project, run.group, run.exit_code) == ("nyc_airbnb", "e2e", 0)
        assert run.run_id == mlflow_ids[step]  # the same id in both views
        params = MlflowClient().get_run(mlflow_ids[step]).data.params
        assert {k: str(v) for k, v in run.config.items() if k in params} == params  # config = parameters
    assert runs["download"].config["source"].endswith("data/nyc_airbnb/sample1.csv")
    assert runs["data_split"].config["test_size"] == 0.2

    summary = {step: runs[step].summary for step in steps}
    assert summary["download"]["rows"] == 20000
    assert summary["basic_cleaning"]["rows_out"] < summary["basic_cleaning"]["rows_in"]
    assert summary["data_check"]["tests_failed"] == 0
    assert 0 < summary["train"]["val_r2"] < 1
    assert summary["test_model"]["mae"] == pytest.approx(
        MlflowClient().get_run(mlflow_ids["test_model"]).data.metrics["mae"]
    )
    assert "plots/feature_importance/_type" in runs["train"].history_keys
    assert "plots/predicted_vs_actual/_type" in runs["test_model"].history_keys

    produced = {(a.name, a.type, tuple(sorted(a.aliases))) for run in runs.values() for a in run.artifacts}
    assert produced == {
        ("raw_data", "raw_data", ("latest",)),
        ("clean_data", "clean_data", ("latest",)),
        ("clean_data", "clean_data", ("latest", "reference")),  # data_check: the first reference
        ("trainval_data", "trainval_data", ("latest",)),
        ("test_data", "test_data", ("latest",)),
        ("model_export", "model_export", ("latest",)),
    }
    clean, reference = (
        runs["basic_cleaning"].artifact("clean_data"),
        runs["data_check"].artifact("clean_data"),
    )
    assert clean.digest == reference.digest  # the alias lands on the same version
    assert clean.description.startswith("nyc_airbnb after basic cleaning")
    assert '"rows"' in runs["data_split"].artifact("test_data").metadata
    assert files_containing(tmp_path, FAKE_KEY) == []


def test_disabled_pipeline_writes_nothing_to_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tracking_uri: str
) -> None:
    wandb_root = tmp_path / "wandb"
    isolate_wandb(wandb_root, monkeypatch)
    runs_dir = tmp_path / "wandb-runs"
    options = f"tracking.wandb.mode=disabled tracking.wandb.dir={runs_dir} hydra.run.dir={tmp_path / 'out'}"
    result = mlflow_run(
        [
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=download",
            "-P",
            f"hydra_options={options}",
        ],
        fresh_tracking_uri,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(pipeline_runs("nyc_airbnb")) == ["download"]
    assert not runs_dir.exists()
    written = [p for p in wandb_root.rglob("*") if p.is_file() and "matplotlib" not in p.parts]
    assert written == []  # no run, cache, staging or settings file of wandb's


def test_wandb_mode_disabled_in_the_environment_turns_the_mirror_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tracking_uri: str
) -> None:
    """W&B's own switch, as a user sets it for any program using W&B, wins over the config's
    offline mode: no W&B run, no file of wandb's, and the log says which variable did it."""
    wandb_root = tmp_path / "wandb"
    isolate_wandb(wandb_root, monkeypatch)
    runs_dir = tmp_path / "wandb-runs"
    options = f"tracking.wandb.mode=offline tracking.wandb.dir={runs_dir} hydra.run.dir={tmp_path / 'out'}"
    result = mlflow_run(
        [".", "--env-manager", "local", "-P", "steps=download", "-P", f"hydra_options={options}"],
        fresh_tracking_uri,
        WANDB_MODE="disabled",
        WANDB_API_KEY=FAKE_KEY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "W&B disabled by WANDB_MODE=disabled (tracking.wandb.mode is offline)" in result.stderr
    client = MlflowClient()
    experiment = client.get_experiment_by_name("nyc_airbnb").experiment_id
    [parent] = client.search_runs([experiment], "tags.`mlpipe.pipeline` = 'true'")
    assert parent.data.tags["mlpipe.wandb_mode"] == "disabled"
    assert not runs_dir.exists()
    written = [p for p in wandb_root.rglob("*") if p.is_file() and "matplotlib" not in p.parts]
    assert written == []


def test_online_without_network_stops_before_any_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tracking_uri: str
) -> None:
    isolate_wandb(tmp_path / "wandb", monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"tracking.wandb.mode=online hydra.run.dir={tmp_path / 'out'}"
    result = mlflow_run(
        [".", "--env-manager", "local", "-P", f"hydra_options={options}"],
        fresh_tracking_uri,
        WANDB_API_KEY=FAKE_KEY,
        WANDB_BASE_URL=f"http://127.0.0.1:{port}",
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: main: cannot reach W&B at http://127.0.0.1:{port} ([Errno 111] Connection refused); "
        "log in with `wandb login` or set tracking.wandb.mode=offline (or disabled)"
    ]
    assert MlflowClient().get_experiment_by_name("nyc_airbnb") is None  # nothing was started
