"""data_check: the data tests run by pytest against the reference version, through the component."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlpipe.data.drift import kl_divergence, ks_pvalue
from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.data.tables import write_table
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import DATASETS
from tests.test_components import assert_failed_cleanly, last_run, run_component

NYC = str(DATASETS / "nyc_airbnb.yaml")


def log_clean(store: ArtifactStore, df: pd.DataFrame, tmp_path: Path) -> None:
    client = MlflowClient()
    run = client.create_run(store.experiment_id)
    path = write_table(df, tmp_path / f"{run.info.run_id}" / "clean_data.parquet")
    store.log(run.info.run_id, "clean_data", path, "clean_data", "test data")
    client.set_terminated(run.info.run_id)


def check(capsys, *extra: str) -> tuple[int, str]:
    args = ["--input_artifact", "clean_data:latest", "--dataset_config", NYC, *extra]
    return run_component("data_check", args, capsys)


@pytest.fixture
def nyc_clean(nyc_raw: pd.DataFrame, nyc_spec: DatasetSpec) -> pd.DataFrame:
    return clean(nyc_raw, nyc_spec, "test").data


def test_first_run_sets_the_reference_then_drift_is_measured(store, capsys, tmp_path, nyc_clean, caplog):
    log_clean(store, nyc_clean, tmp_path)
    assert check(capsys)[0] == 0
    assert store.resolve("clean_data:reference").ref == "clean_data:v0"
    first = last_run(store)
    assert first.data.metrics["tests_skipped"] == 2 and first.data.metrics["tests_failed"] == 0
    log_clean(store, nyc_clean.sample(frac=0.85, random_state=1), tmp_path)  # same distribution
    code, err = check(capsys)
    assert code == 0, err
    run = last_run(store)
    assert run.data.metrics["tests_passed"] == 9
    assert 0 <= run.data.metrics["kl.neighbourhood_group"] < 0.01
    assert run.data.metrics["ks_pvalue.price"] > 0.001
    assert store.resolve("clean_data:reference").ref == "clean_data:v0"  # the reference stays


def test_drift_fails_the_step_and_keeps_the_reference(store, capsys, tmp_path, nyc_clean):
    log_clean(store, nyc_clean, tmp_path)
    assert check(capsys)[0] == 0
    drifted = nyc_clean[nyc_clean.neighbourhood_group == "Manhattan"]
    drifted = pd.concat([drifted] * 8, ignore_index=True)  # enough rows for the row-count test
    log_clean(store, drifted, tmp_path)
    code, err = check(capsys, "--kl_threshold", "0.2")
    assert_failed_cleanly(
        code, err, store, "data test(s) failed on clean_data:v1: test_category_drift", "nothing"
    )
    assert "KL divergence from the reference at or above 0.2" in err
    assert store.resolve("clean_data:reference").ref == "clean_data:v0"


def test_unknown_categories_and_ranges_fail_on_the_first_run(store, capsys, tmp_path, nyc_clean):
    bad = nyc_clean.copy()
    bad.loc[0, "room_type"] = "Treehouse"
    bad.loc[1, "latitude"] = 10.0
    log_clean(store, bad, tmp_path)
    code, err = check(capsys)
    assert_failed_cleanly(code, err, store, "2 data test(s) failed on clean_data:v0", "nothing")
    assert "Treehouse" in err and "latitude" in err
    assert store.find("clean_data:reference") is None  # failed data never becomes the reference


def test_kl_divergence_is_robust_to_missing_categories():
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    assert kl_divergence(ref, ref) == pytest.approx(0)
    only_a = pd.Series(["a"] * 100)
    with_new = pd.Series(["a"] * 50 + ["c"] * 50)
    assert 0 < kl_divergence(ref, only_a) < float("inf")
    assert kl_divergence(ref, with_new) > kl_divergence(ref, pd.Series(["a"] * 45 + ["b"] * 55))


def test_ks_pvalue():
    a = pd.Series(range(1000), dtype=float)
    assert ks_pvalue(a, a) == pytest.approx(1.0)
    assert ks_pvalue(a, a + 500) < 1e-6
    assert pd.isna(ks_pvalue(a, pd.Series([], dtype=float)))
