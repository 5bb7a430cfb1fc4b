"""Batch inference on any table: one without id columns (identical rows each scored, an edit
rescoring that row alone, a `row` column joining every prediction to its source row), the log
line's counts equal to the metrics and adding up, drift of the rows to score against the
reference, and a source the model cannot take stopping before anything is scored."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.entities import Run

from mlpipe.data.kinds.table.new_rows import read_new_table
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import COMPONENTS_DIR, NYC_CSV, PROJECT_ROOT, TrainedStore, subprocess_env
from tests.test_inference import DATASET, Inference, counts, ledger_rows

TABLE_ROWS, DUPLICATES = 30_000, 2_400  # 8 % of the rows repeat another row's features
EDITS, APPENDED = 100, 50
LINE = re.compile(
    r"prod \(.*?\): (?:nothing to score: )?(?P<rows_in>\d+) rows in: (?P<rows_new>\d+) new, "
    r"(?P<rows_changed>\d+) changed, (?P<rows_rescored>\d+) rescored \(.*?\), (?P<rows_skipped>\d+) "
    r"unchanged, (?P<rows_refused>\d+) refused before scoring \(.*?\); (?P<rows_scored>\d+) scored, "
    r"(?P<rows_rejected>\d+) rejected \((?P<before>\d+) before scoring, (?P<by_model>\d+) by the model\), "
    r"(?P<skipped_again>\d+) skipped; (?P<rows_gone>\d+) row\(s\) gone from the source"
)


def dataset_config(tmp_path: Path, name: str, edit: dict[str, list[str]] | None = None) -> Path:
    """The NYC dataset config under another name, with column roles edited (role -> columns)."""
    config = yaml.safe_load((PROJECT_ROOT / DATASET).read_text())
    config["name"] = name
    config["columns"].update(edit or {})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def summary_counts(log: str) -> dict[str, int]:
    """The counts of the last summary line, checked to add up."""
    found = [m.groupdict() for m in LINE.finditer(log)]
    assert found, log[-3000:]
    line = {k: int(v) for k, v in found[-1].items()}
    assert line["rows_in"] == sum(
        line[f"rows_{k}"] for k in ("new", "changed", "rescored", "skipped", "refused")
    )
    assert line["rows_in"] == line["rows_scored"] + line["rows_rejected"] + line["rows_skipped"]
    assert (
        line["rows_rejected"] == line["before"] + line["by_model"] and line["before"] == line["rows_refused"]
    )
    assert line.pop("skipped_again") == line["rows_skipped"]
    line.pop("before"), line.pop("by_model")
    return line


def metric_counts(run: Run) -> dict[str, int]:
    return {**counts(run), **{k: int(run.data.metrics[k]) for k in ("rows_refused", "rows_gone")}}


def versions(store: ArtifactStore, name: str) -> int:
    return len(store.versions(name))


@pytest.fixture
def inference(trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Inference:
    """Inference with a registered model of its own, the good one in prod."""
    inference = Inference(trained_store, monkeypatch, tmp_path, f"tables_{uuid.uuid4().hex[:8]}")
    inference.registry.promote("good")
    return inference


def table_without_ids() -> pd.DataFrame:
    """30,000 listings without id columns, 2,400 of them repeating another row's features."""
    listings = pd.read_csv(NYC_CSV).drop(columns=["id", "host_id"])  # 20,000 distinct rows
    more = listings.head(TABLE_ROWS - DUPLICATES - len(listings))
    more = more.assign(name=more["name"].fillna("") + " (2)")
    distinct = pd.concat([listings, more], ignore_index=True)
    repeated = distinct.sample(DUPLICATES, random_state=0)
    return pd.concat([distinct, repeated]).sample(frac=1, random_state=1).reset_index(drop=True)


@pytest.mark.slow
def test_a_table_without_ids_scores_every_row_and_an_edit_rescores_that_row_alone(
    inference: Inference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = dataset_config(tmp_path, "listings_without_ids", {"id": [], "ignored": ["host_name"]})
    spec = DatasetSpec.from_file(config)
    rows = table_without_ids()
    assert rows[spec.features].duplicated().sum() == DUPLICATES
    source = tmp_path / "listings.csv"
    rows.to_csv(source, index=False)
    fast = ("--dataset_config", str(config), "--drift", "off")

    first = inference.run(source, *fast)
    assert metric_counts(first) == {
        "rows_in": TABLE_ROWS,
        "rows_new": TABLE_ROWS,
        "rows_changed": 0,
        "rows_rescored": 0,
        "rows_skipped": 0,
        "rows_refused": 0,
        "rows_rejected": 0,
        "rows_scored": TABLE_ROWS,
        "rows_gone": 0,
    }
    assert summary_counts(capsys.readouterr().err) == metric_counts(first)

    edited = rows[rows["name"].notna()].sample(EDITS, random_state=2).index
    rows.loc[edited, "name"] = rows.loc[edited, "name"] + " (edited)"
    added = pd.read_csv(NYC_CSV).drop(columns=["id", "host_id"]).iloc[:APPENDED]
    rows = pd.concat([rows, added.assign(name=added["name"].fillna("") + " (new)")], ignore_index=True)
    rows.to_csv(source, index=False)
    second = inference.run(source, *fast)
    assert metric_counts(second) == {
        "rows_in": TABLE_ROWS + APPENDED,
        "rows_new": EDITS + APPENDED,  # without ids an edited row is a new one, and its old self gone
        "rows_changed": 0,
        "rows_rescored": 0,
        "rows_skipped": TABLE_ROWS - EDITS,
        "rows_refused": 0,
        "rows_rejected": 0,
        "rows_scored": EDITS + APPENDED,
        "rows_gone": EDITS,
    }
    assert summary_counts(capsys.readouterr().err) == metric_counts(second)
    assert len(ledger_rows(inference.ledger)) == TABLE_ROWS + APPENDED + EDITS  # the gone ones kept

    predictions = inference.output(second, "predictions")
    assert len(predictions) == TABLE_ROWS + APPENDED
    assert sorted(predictions["row"]) == list(range(1, TABLE_ROWS + APPENDED + 1))
    joined = predictions.set_index("row").sort_index()
    new = read_new_table(rows, spec, None, "inference")
    assert (joined["row_hash"].to_numpy() == np.asarray(new.hashes)).all()  # each its source row's
    assert joined["prediction"].notna().all()
    assert joined.groupby("row_hash")["prediction"].nunique().max() == 1  # same features, same answer

    # the edits undone, with forget_gone: the edited rows' keys are gone and leave the ledger
    rows.loc[edited, "name"] = rows.loc[edited, "name"].str.removesuffix(" (edited)")
    rows.to_csv(source, index=False)
    third = inference.run(source, *fast, "--forget_gone", "true")
    assert metric_counts(third)["rows_scored"] == 0 and metric_counts(third)["rows_gone"] == EDITS
    assert len(ledger_rows(inference.ledger)) == TABLE_ROWS + APPENDED


@pytest.mark.slow
def test_drift_of_the_rows_to_score_is_logged_and_with_drift_fail_stops_before_scoring(
    inference: Inference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "listings.csv"
    listings = pd.read_csv(NYC_CSV).head(2000)
    listings.to_csv(source, index=False)
    first = inference.run(source)
    tests = {"kl.neighbourhood_group", "kl.room_type", "ks_pvalue.price", "ks_pvalue.minimum_nights"}
    assert tests <= set(first.data.metrics) and first.data.metrics["drift_tests_failed"] == 0
    assert "drift: none found in the 2000 rows to score against clean_data:v" in capsys.readouterr().err

    drifted = listings.assign(minimum_nights=listings["minimum_nights"] * 30, room_type="Shared room")
    drifted.to_csv(source, index=False)
    ledger_before = ledger_rows(inference.ledger)
    predictions_before = versions(inference.store, "predictions")
    with pytest.raises(
        StepError,
        match=r"^inference: drift in the 2000 rows to score against clean_data:v\d+ "
        r"\(clean_data:reference\): "
        r"KL divergence from the reference at or above 0.2: \{'room_type': .*\}; KS p-value below 0.001 "
        r".*'minimum_nights'.*; nothing scored \(inference.drift=warn scores them anyway\)$",
    ):
        inference.run(source, "--drift", "fail")
    failed = inference.last_run()
    assert failed.info.status == "FAILED" and failed.data.metrics["drift_tests_failed"] == 2
    assert failed.data.metrics["kl.room_type"] > 0.2 and not inference.store.outputs_of(failed)
    assert versions(inference.store, "predictions") == predictions_before
    pd.testing.assert_frame_equal(ledger_rows(inference.ledger), ledger_before)  # nothing scored

    warned = inference.run(source)  # the default: warn, and score
    assert counts(warned)["rows_scored"] == 2000 and warned.data.metrics["drift_tests_failed"] == 2
    assert "scored anyway (inference.drift=fail stops)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_source_without_a_feature_column_stops_before_scoring(inference: Inference, tmp_path: Path) -> None:
    source = tmp_path / "listings.csv"
    pd.read_csv(NYC_CSV).head(2000).drop(columns=["minimum_nights"]).to_csv(source, index=False)
    before = versions(inference.store, "predictions")
    done = subprocess.run(
        [sys.executable, str(COMPONENTS_DIR / "batch_inference" / "run.py"), *inference.argv(source)],
        env=subprocess_env(
            MLFLOW_TRACKING_URI=inference.uri, MLFLOW_EXPERIMENT_ID=inference.store.experiment_id
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: inference: source 'listings.csv' lacks feature column(s) 'minimum_nights'; found: id, name, "
        "host_id, host_name, neighbourhood_group, neighbourhood, latitude, longitude, room_type, price, "
        "number_of_reviews, last_review, reviews_per_month, calculated_host_listings_count, "
        "availability_365; "
        "expected every feature column of dataset 'nyc_airbnb'"
    ]
    assert "Traceback" not in done.stderr
    assert versions(inference.store, "predictions") == before
    assert inference.last_run().info.status == "FAILED"


@pytest.mark.slow
def test_a_model_that_refuses_every_row_alike_stops_at_once_with_a_short_reason(
    inference: Inference, tmp_path: Path
) -> None:
    # The dataset config no longer names `name` as a feature, but the model was trained with it.
    config = dataset_config(
        tmp_path, "listings_without_names", {"text": [], "ignored": ["host_name", "name"]}
    )
    source = tmp_path / "listings.csv"
    pd.read_csv(NYC_CSV).head(2000).drop(columns=["name"]).to_csv(source, index=False)
    before = versions(inference.store, "predictions")
    with pytest.raises(StepError) as refused:
        inference.run(source, "--dataset_config", str(config), "--drift", "off")
    reason = str(refused.value)
    assert reason.startswith(
        f"inference: model 'prod' (models:/{inference.name}/1) refuses every row tried (5 across a batch) "
        "alike: model input lacks column(s) 'name'; it needs "
    )
    assert "\n" not in reason and len(reason) < 400  # not MLflow's printed frame
    assert versions(inference.store, "predictions") == before
