"""Comparison jobs: models trained and tested on one data snapshot through the pipeline's own
steps, ranked, broken down per label or per target bucket, and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from sklearn.metrics import precision_recall_fscore_support

from mlpipe.errors import StepError
from mlpipe.models import comparison, comparison_report
from mlpipe.pipeline import comparison_jobs
from mlpipe.pipeline.config import load
from mlpipe.pipeline.contract import typed
from mlpipe.pipeline.definition import selected_steps
from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.runs import TAG_COMPARED_MODEL, TAG_PARENT, TAG_STEP
from mlpipe.tracking.wandb_mirror import Mirror
from tests.conftest import DATASETS, TrainedStore, run_main
from tests.wandb_records import isolate_wandb, offline_runs

NYC_MODELS = ["random_forest", "hist_gradient_boosting", "linear"]
ESTIMATORS = {
    "random_forest": "RandomForestRegressor",
    "hist_gradient_boosting": "HistGradientBoostingRegressor",
}


def load_dataset(name: str) -> dict:
    return yaml.safe_load((DATASETS / f"{name}.yaml").read_text())


# -- ranking and breakdowns ---------------------------------------------------------------------
def test_ties_share_a_rank_and_failed_models_come_last_unranked() -> None:
    rows = [
        {"model": "a", "status": "FINISHED", "accuracy": 0.9},
        {"model": "broken", "status": "FAILED", "error": "boom"},
        {"model": "b", "status": "FINISHED", "accuracy": 0.95},
        {"model": "c", "status": "FINISHED", "accuracy": 0.9 + 1e-15},  # float noise: a tie
    ]
    table = comparison.ranked(rows, "accuracy", "maximize")
    assert list(table["model"]) == ["b", "a", "c", "broken"]
    assert table["rank"].tolist()[:3] == [1, 2, 2] and pd.isna(table["rank"][3])
    assert list(table["tied"]) == ["", "c", "a", ""]
    assert table.loc[3, "error"] == "boom"
    assert list(comparison.ranked(rows, "accuracy", "minimize")["model"][:3]) == ["a", "c", "b"]


def test_per_label_rows_are_scikit_learns_and_mark_the_best_model_of_each_label() -> None:
    actual = np.array(["x", "x", "y", "y", "z"])
    predictions = {"m1": np.array(["x", "y", "y", "y", "z"]), "m2": np.array(["x", "x", "y", "x", "x"])}
    table = comparison.per_label(actual, predictions)
    assert len(table) == 6 and set(table["label"]) == {"x", "y", "z"}
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predictions["m2"], labels=["x", "y", "z"], zero_division=0
    )
    m2 = table[table["model"] == "m2"].set_index("label")
    assert np.allclose(m2["f1"], f1) and np.allclose(m2["precision"], precision)
    assert np.allclose(m2["recall"], recall)
    assert list(m2["support"]) == list(support)
    best = table[table["best"]].groupby("label")["model"].agg(sorted).to_dict()
    assert best == {"x": ["m1", "m2"], "y": ["m1"], "z": ["m1"]}  # x: a tie, both marked
    wide = comparison.breakdown("classification", actual, predictions, 5, "t").wide()
    assert list(wide.columns) == ["label", "support", "m1", "m2", "best"]


def test_error_by_bucket_covers_every_row_in_quantile_buckets() -> None:
    actual = np.arange(100, dtype=float)
    table = comparison.error_by_bucket(actual, {"exact": actual, "high": actual + 2}, buckets=4)
    assert len(table) == 8
    assert table.groupby("model")["rows"].sum().to_dict() == {"exact": 100, "high": 100}
    assert set(table.loc[table["model"] == "high", "mean_error"]) == {2.0}
    assert (
        table.loc[table["model"] == "exact", "best"].all()
        and not table.loc[table["model"] == "high", "best"].any()
    )


def test_the_report_pages_hold_the_tables_and_the_plots(tmp_path: Path) -> None:
    summary = comparison.ranked([{"model": "m", "status": "FINISHED", "mae": 1.5}], "mae", "minimize")
    import matplotlib.pyplot as plt

    figure = plt.figure()
    name = comparison_report.save(figure, tmp_path, "p.png")
    sections = [
        comparison_report.Section("Models", "text", summary),
        comparison_report.Section("Plots", plots=[name]),
    ]
    comparison_report.write(tmp_path, "Comparison", sections, {"comparison": summary})
    assert pd.read_csv(tmp_path / "comparison.csv")["mae"].tolist() == [1.5]
    page = (tmp_path / "comparison.md").read_text()
    assert "| 1 | m | FINISHED | 1.5 |" in page and "![p.png](plots/p.png)" in page
    assert "data:image/png;base64," in (tmp_path / "comparison.html").read_text()


# -- the jobs: composition and pinned versions --------------------------------------------------
def test_each_job_pins_the_comparisons_data_versions() -> None:
    assert comparison_jobs.pins(
        ("train", "test_model"), {"trainval_data": "trainval_data:v3", "test_data": "test_data:v1"}
    ) == [
        "++test_model.test_artifact=test_data:v1",
        "++train.trainval_artifact=trainval_data:v3",
    ]


def test_a_model_override_applies_to_the_models_whose_config_has_the_key() -> None:
    invocation = ["main.steps='compare'", "model.estimator.n_estimators=7", "data_split.test_size=0.3"]
    pinned = {"trainval_data": "trainval_data:v0", "test_data": "test_data:v0"}
    dataset = load_dataset("penguins")
    forest = comparison_jobs.model_job("random_forest", invocation, pinned, dataset, "penguins")
    boosting = comparison_jobs.model_job("hist_gradient_boosting", invocation, pinned, dataset, "penguins")
    assert forest.cfg.model.estimator.n_estimators == 7 and not forest.skipped
    assert (
        boosting.skipped == ["model.estimator.n_estimators=7"]
        and "n_estimators" not in boosting.cfg.model.estimator
    )
    for job in (forest, boosting):
        assert job.cfg.main.steps == "train,test_model" and job.cfg.data_split.test_size == 0.3
        assert (
            job.cfg.train.trainval_artifact == "trainval_data:v0" and job.cfg.main.project_name == "penguins"
        )


def test_an_unknown_model_stops_the_comparison_one_for_another_kind_is_a_failed_row() -> None:
    pinned = {"trainval_data": "trainval_data:v0", "test_data": "test_data:v0"}
    forest, cnn = comparison_jobs.plan(["random_forest", "cnn"], [], pinned, load_dataset("penguins"), "p")
    assert forest.cfg is not None and not forest.error
    assert cnn.cfg is None and cnn.error == (
        "compare: model 'cnn' trains on images datasets, but dataset 'penguins' is of kind table; take it "
        "out of compare.models (models for table datasets: hist_gradient_boosting, linear, "
        "logistic_regression, random_forest)"
    )
    with pytest.raises(
        StepError, match=r"compare.models is \['nope'\]; expected one or more of .*random_forest"
    ):
        comparison_jobs.plan(["nope"], [], pinned, load_dataset("penguins"), "p")
    [forest, prod] = comparison_jobs.plan(
        ["random_forest"], [], pinned, load_dataset("penguins"), "p", include_prod=True, prod_exists=False
    )
    assert forest.cfg is not None and prod.cfg is None
    assert "no model_export version is aliased prod" in prod.error


def test_each_model_is_labelled_with_what_it_trains_and_out_of_range_predictions_are_counted() -> None:
    assert comparison.estimator_label({"model.estimator._target_": "sklearn.linear_model.Ridge"}) == "Ridge"
    assert comparison.estimator_label({"model.component": "train_torch"}) == "CNN (torch)"
    found = comparison.out_of_range([-5.0, 10.0, 200.0, 351.0, 400.0], trained_on=[10.0, np.nan, 350.0])
    assert (found.low, found.high, found.below, found.above, found.count) == (10.0, 350.0, 1, 2, 3)
    assert found.describe(5, "price") == (
        "3 of 5 predictions outside the training range of price [10, 350] (1 below, 2 above)"
    )


def test_compare_gets_the_overrides_and_needs_no_model_for_the_datas_kind(tmp_path: Path) -> None:
    files = (tmp_path / "dataset.yaml", tmp_path / "model.yaml")
    overrides = ["dataset=digits", "main.steps=compare", "compare.models=[cnn,cnn_small]"]
    [compare] = selected_steps(load(overrides), *files, overrides)
    assert compare.params["overrides"] == overrides and compare.params["models"] == ["cnn", "cnn_small"]
    assert compare.side_effects  # never reused: the models it compares are, through their own steps
    with pytest.raises(StepError, match="model 'random_forest' trains on table datasets"):
        selected_steps(load(["dataset=digits", "main.steps=train"]), *files)


@pytest.mark.parametrize("text", ['["cnn", "cnn_small"]', "[cnn,cnn_small]", "cnn,cnn_small"])
def test_a_list_of_models_reads_as_json_as_hydra_writes_it_or_comma_separated(text: str) -> None:
    assert typed(text, list[str], "compare: parameter 'models'") == ["cnn", "cnn_small"]


def test_the_comparison_table_is_mirrored_to_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = isolate_wandb(tmp_path / "wandb", monkeypatch)
    mirror = Mirror.start("compare", {}, "cmp1", "penguins", mode="offline")
    mirror.rename("comparison")
    mirror.log_table("comparison", pd.DataFrame({"model": ["a", "b"], "accuracy": [0.9, 0.8]}))
    mirror.finish(failed=False)
    (run,) = offline_runs(runs)
    assert any(key.startswith("comparison") for key in run.history_keys)
    assert run.exit_code == 0


# -- end to end ---------------------------------------------------------------------------------
class Report:
    """The latest comparison of an experiment: its run, its report files, its model runs."""

    def __init__(self, uri: str, experiment: str, tmp: Path) -> None:
        self.client = MlflowClient(uri)
        self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        self.run = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_STEP}` = 'compare'", order_by=["attributes.start_time DESC"]
        )[0]
        store = ArtifactStore(self.experiment_id, self.client)
        version = next(v for v in store.versions("comparison_report") if v.run_id == self.run.info.run_id)
        self.folder = store.download(version, tmp / "report")
        self.summary = pd.read_csv(self.folder / "comparison.csv").set_index("model", drop=False)

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.folder / f"{name}.csv")

    def model_runs(self) -> dict[str, list]:
        """model -> [its pipeline run, then its step runs]."""
        nested = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_PARENT}` = '{self.run.info.run_id}'"
        )
        found = {}
        for pipeline in nested:
            steps = self.client.search_runs(
                [self.experiment_id], f"tags.`{TAG_PARENT}` = '{pipeline.info.run_id}'"
            )
            found[pipeline.data.tags[TAG_COMPARED_MODEL]] = [pipeline, *steps]
        return found


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenMP (gradient boosting, torch) on one thread: the suite shares two busy cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_three_models_on_nyc_on_one_snapshot(
    trained_store: TrainedStore, tmp_path: Path, one_thread: None
) -> None:
    done = run_main(
        [
            "main.steps=compare",
            "main.executor=inprocess",
            f"compare.models=[{','.join(NYC_MODELS)}]",
            "model.estimator.n_estimators=8",  # the trained store's "good" forest: reused, not trained again
            "model.estimator.n_jobs=1",
        ],
        trained_store.uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = Report(trained_store.uri, trained_store.experiment, tmp_path)
    summary = report.summary
    assert report.run.info.run_name == "comparison" and report.run.info.status == "FINISHED"
    assert sorted(summary["model"]) == sorted(NYC_MODELS) and set(summary["status"]) == {"FINISHED"}
    assert set(summary["trainval_data"]) == {"trainval_data:v0"} and set(summary["test_data"]) == {
        "test_data:v0"
    }
    assert list(summary["rank"]) == [1, 2, 3] and summary["mae"].is_monotonic_increasing
    assert (
        summary["mae"].max() < 45
        and (summary["latency_ms"] > 0).all()
        and (summary["train_seconds"] > 0).all()
    )
    assert summary.loc["random_forest", "reused"] == "train"  # trained by the fixture with the same config
    assert summary.loc["hist_gradient_boosting", "skipped_overrides"] == (
        "model.estimator.n_estimators=8 model.estimator.n_jobs=1"
    )
    assert report.run.data.metrics["random_forest.mae"] == pytest.approx(summary.loc["random_forest", "mae"])
    # linear is Ridge for a regression, and says so; a forest never predicts outside the prices it
    # was trained on (its leaves average training rows), Ridge does (negative prices)
    assert summary["estimator"].to_dict() == {**ESTIMATORS, "linear": "Ridge"}
    assert summary.loc["random_forest", "outside_train_range"] == 0
    assert summary.loc["linear", "outside_train_range"] > 0
    assert (
        report.run.data.metrics["linear.outside_train_range"] == summary.loc["linear", "outside_train_range"]
    )
    assert report.run.data.tags["best_model"] == summary.iloc[0]["model"]

    buckets = report.table("error_by_bucket")
    assert buckets["bucket"].nunique() == 5 and set(buckets["model"]) == set(NYC_MODELS)
    assert len(set(buckets.groupby("model")["rows"].sum())) == 1  # every test row in a bucket, per model
    runs = report.model_runs()
    assert sorted(runs) == sorted(NYC_MODELS)
    for model, (pipeline, *steps) in runs.items():
        assert pipeline.info.run_name == f"model {model}" and pipeline.info.status == "FINISHED"
        assert sorted(s.data.tags[TAG_STEP] for s in steps) == ["test_model", "train"]
    files = {p.name for p in (report.folder / "plots").iterdir()}
    assert files == {"side_by_side.png", *(f"predicted_vs_actual_{m}.png" for m in NYC_MODELS)}
    page = (report.folder / "comparison.md").read_text()
    assert (
        "trained on trainval_data:v0, tested on test_data:v0" in page
        and "## Error by bucket of price" in page
    )
    assert "linear: " in page and "predictions outside the training range of price [10, 350]" in page


@pytest.mark.slow
def test_penguins_per_label_a_failed_model_and_prod(tmp_path: Path, one_thread: None) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = "main.steps='download,basic_cleaning,data_split,train,promote'"
    done = run_main(["dataset=penguins", "main.executor=inprocess", steps], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_main(
        [
            "dataset=penguins",
            "main.executor=inprocess",
            "main.steps=compare",
            "compare.models=[random_forest,hist_gradient_boosting,logistic_regression,cnn]",
            "compare.include_prod=true",
            "model=logistic_regression",
            "model.estimator_by_task.classification.C=-1.0",  # logistic regression only: it fails to train
        ],
        uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = Report(uri, "penguins", tmp_path)
    summary = report.summary
    assert list(summary["model"])[-2:] == ["logistic_regression", "cnn"]  # failed, in the order named
    failed = summary.loc["logistic_regression"]
    assert failed["status"] == "FAILED" and pd.isna(failed["rank"]) and "'C' parameter" in failed["error"]
    assert failed["estimator"] == "LogisticRegression"  # the earlier name of linear
    wrong_kind = summary.loc["cnn"]  # an image model on a table: a row, the others still ran
    assert wrong_kind["status"] == "FAILED" and "take it out of compare.models" in wrong_kind["error"]
    assert "outside_train_range" not in summary  # a classification: no range to leave
    ok = summary[summary["status"] == "FINISHED"]
    assert sorted(ok["model"]) == ["hist_gradient_boosting", "prod", "random_forest"]
    assert set(summary["trainval_data"]) == {"trainval_data:v0"} and set(summary["test_data"]) == {
        "test_data:v0"
    }
    # prod is the forest the first run trained and promoted: the same export, reused, tied with it
    assert summary.loc["prod", "model_export"] == summary.loc["random_forest", "model_export"]
    assert summary.loc["random_forest", "reused"] == "train"
    assert summary.loc["prod", "rank"] == summary.loc["random_forest", "rank"]
    assert "prod" in summary.loc["random_forest", "tied"]

    labels = report.table("per_label")
    assert len(labels) == 3 * 3  # every class, every model that finished
    assert set(labels["label"]) == {"Adelie", "Chinstrap", "Gentoo"} and set(labels["model"]) == set(
        ok["model"]
    )
    assert labels.groupby("label")["best"].any().all()
    assert labels.groupby("model")["support"].sum().nunique() == 1
    files = {p.name for p in (report.folder / "plots").iterdir()}
    assert {f"confusion_matrix_{m}.png" for m in ok["model"]} <= files
    assert "Per label (F1; best model per label)" in (report.folder / "comparison.html").read_text()


@pytest.mark.slow
def test_digits_cnn_against_cnn_small(tmp_path: Path, one_thread: None) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_main(
        [
            "dataset=digits",
            "model=cnn",
            "model.epochs=1",  # both networks have it: one epoch each
            "main.executor=inprocess",
            "main.steps='download,basic_cleaning,data_split,compare'",  # the data check is not what is tested
            "compare.models=[cnn,cnn_small]",
        ],
        uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = Report(uri, "digits", tmp_path)
    summary = report.summary
    assert sorted(summary["model"]) == ["cnn", "cnn_small"] and set(summary["status"]) == {"FINISHED"}
    assert summary["trainval_data"].nunique() == 1 and summary["test_data"].nunique() == 1
    assert (summary["accuracy"] > 0.5).all()
    labels = report.table("per_label")
    assert len(labels) == 10 * 2 and sorted(labels["label"].astype(str).unique()) == [
        str(d) for d in range(10)
    ]
