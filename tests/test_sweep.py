"""Hydra multiruns: objective, summary, parallel jobs through `mlflow run`, Optuna, a fresh store."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

from mlpipe.errors import StepError
from mlpipe.pipeline import sweep
from mlpipe.pipeline.sweep import JobRecord
from tests.conftest import TrainedStore, mlflow_run, run_main


def records() -> list[JobRecord]:
    return [
        JobRecord(0, "a=1", "FINISHED", 3.0),
        JobRecord(1, "a=2", "FAILED", None, error="train: boom"),
        JobRecord(2, "a=3", "FINISHED", 1.0),
        JobRecord(3, "a=4", "FAILED", math.nan),
    ]


def test_ranked_puts_the_best_first_and_failures_last() -> None:
    assert [r.job for r in sweep.ranked(records(), "minimize")] == [2, 0, 1, 3]
    assert [r.job for r in sweep.ranked(records(), "maximize")] == [0, 2, 1, 3]
    with pytest.raises(StepError, match="direction is 'lowest'"):
        sweep.ranked(records(), "lowest")


def test_summary_rows_keep_failed_jobs_with_their_error() -> None:
    rows = sweep.summary_rows(sweep.ranked(records(), "minimize"), "val_mae")
    assert [(r["rank"], r["job"], r["val_mae"]) for r in rows] == [
        (1, 2, 1.0),
        (2, 0, 3.0),
        (3, 1, ""),
        (4, 3, ""),
    ]
    assert rows[2]["error"] == "train: boom"


def test_objective_reads_the_configured_metric_of_the_step_run(experiment_id: str) -> None:
    cfg = OmegaConf.create({"main": {"objective": {"step": "train", "metric": "val_mae"}}})
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "val_mae", 12.5)
    assert sweep.objective(cfg, {"train": run.info.run_id}) == 12.5
    assert sweep.objective(cfg, {"download": run.info.run_id}) is None  # train did not run
    cfg.main.objective.metric = "val_f1"
    with pytest.raises(StepError, match=r"objective metric 'val_f1'.*it logged: val_mae"):
        sweep.objective(cfg, {"train": run.info.run_id})


def sweep_runs(uri: str, experiment: str, sweep_dir: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs(
        [experiment_id], f"tags.`{sweep.TAG_SWEEP_ID}` = '{sweep.sweep_id(sweep_dir)}'", max_results=100
    )


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / sweep.SUMMARY_FILE).open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_parallel_sweep_through_mlflow_run_survives_a_failed_job(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    options = (
        "model.estimator.max_depth=4,-3 model.preprocessing.tfidf_max_features=10,15 "
        "model.estimator.n_estimators=3 model.estimator.n_jobs=1 "
        f"hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir={sweep_dir} -m"
    )
    done = mlflow_run(
        [".", "--env-manager", "local", "-P", "steps=train", "-P", f"hydra_options={options}"],
        trained_store.uri,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rows = read_summary(sweep_dir)
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "FAILED", "FAILED"]
    assert float(rows[0]["val_mae"]) <= float(rows[1]["val_mae"])
    assert all("max_depth=4" in r["overrides"] for r in rows[:2])
    assert all("max_depth=-3" in r["overrides"] and "train" in r["error"] for r in rows[2:])
    assert "sweep summary (4 jobs, 2 failed" in done.stdout + done.stderr

    pipelines = [
        r for r in sweep_runs(trained_store.uri, "nyc_airbnb", sweep_dir) if "mlpipe.pipeline" in r.data.tags
    ]
    assert sorted(int(r.data.tags[sweep.TAG_SWEEP_JOB]) for r in pipelines) == [0, 1, 2, 3]
    assert {r.info.run_id for r in pipelines} == {r["parent_run_id"] for r in rows}
    summary_run = [
        r
        for r in sweep_runs(trained_store.uri, "nyc_airbnb", sweep_dir)
        if sweep.TAG_SWEEP_SUMMARY in r.data.tags
    ]
    assert len(summary_run) == 1 and summary_run[0].data.metrics["failed_jobs"] == 2
    for job in range(4):  # each job wrote its files in its own folder
        assert {"dataset.yaml", "model.yaml", sweep.JOB_RECORD} <= {
            p.name for p in (sweep_dir / str(job)).iterdir()
        }


@pytest.mark.slow
def test_eight_parallel_jobs_on_a_fresh_store_lose_no_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    sweep_dir = tmp_path / "sweep"
    done = run_main(
        [
            "main.steps=download",
            "data_split.random_seed=range(0,8)",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    pipelines = [r for r in sweep_runs(uri, "nyc_airbnb", sweep_dir) if "mlpipe.pipeline" in r.data.tags]
    assert len(pipelines) == 8
    assert {r.info.status for r in pipelines} == {"FINISHED"}
    assert [r["status"] for r in read_summary(sweep_dir)] == ["FINISHED"] * 8


@pytest.mark.slow
def test_optuna_sweep_minimizes_the_returned_objective(trained_store: TrainedStore, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "optuna"
    done = run_main(
        [
            "hparams_search=random_forest_optuna",
            "main.steps=train",
            "hydra.sweeper.n_trials=3",
            "model.estimator.n_estimators=3",
            "model.estimator.n_jobs=1",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        trained_store.uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_summary(sweep_dir)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"FINISHED"}
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_value == pytest.approx(float(rows[0]["val_mae"]))
    assert best.best_value == min(float(r["val_mae"]) for r in rows)


@pytest.mark.slow
def test_optuna_maximizes_when_the_dataset_says_so(tmp_path: Path) -> None:
    """penguins' metric is val_accuracy, up: the search's direction follows the dataset."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fast = [
        "dataset=penguins",
        "main.executor=inprocess",
        "model.estimator.n_estimators=5",
        "model.estimator.n_jobs=1",
    ]
    done = run_main([*fast, "main.steps='download,basic_cleaning,data_check,data_split'"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_dir = tmp_path / "optuna"
    search = ["hparams_search=random_forest_optuna", "main.steps=train", "hydra.sweeper.n_trials=4"]
    done = run_main([*fast, *search, f"hydra.sweep.dir={sweep_dir}"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    accuracies = [float(r["val_accuracy"]) for r in read_summary(sweep_dir)]
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml").best_value
    assert best == max(accuracies) and best > min(accuracies)

    done = run_main([*fast, *search, "hydra.sweeper.direction=minimize"], uri, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: main: hydra.sweeper.direction is 'minimize' but main.objective.direction (val_accuracy) "
        "is 'maximize'; leave the sweeper's direction to follow it"
    )
