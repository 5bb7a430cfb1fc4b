"""Every column the dataset config names is checked against the data before anything becomes the
reference: a wrong name is one line naming the key and the column, on the first run."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import DATASETS, run_component, run_pipeline
from tests.test_data_check import log_clean


@pytest.mark.parametrize(
    ("override", "key", "column"),
    [
        ("dataset.checks.ks_columns=[body_mass]", "checks.ks_columns", "body_mass"),
        ("dataset.checks.drift_columns=[islands]", "checks.drift_columns", "islands"),
        ("+dataset.checks.categories.colour=[red]", "checks.categories", "colour"),
        ("+dataset.checks.ranges.bill_mm=[1,2]", "checks.ranges", "bill_mm"),
        ("+dataset.cleaning.bounds.mass=[1,2]", "cleaning.bounds", "mass"),
        ("dataset.stratify_by=kind", "stratify_by", "kind"),
    ],
)
def test_a_column_the_data_lacks_stops_the_first_run_before_a_reference_exists(
    project_name: str, tmp_path: Path, override: str, key: str, column: str
) -> None:
    with pytest.raises(StepError) as failed:
        run_pipeline(project_name, tmp_path, override)
    message = str(failed.value)
    assert message.startswith(
        "main: step 'basic_cleaning' failed: basic_cleaning: raw_data:v0 (penguins.csv): "
    )
    assert f"{key} names column '{column}', which the data lacks" in message
    store = ArtifactStore(MlflowClient().get_experiment_by_name(project_name).experiment_id)
    assert store.versions("clean_data") == [] and store.find("clean_data:reference") is None


def test_data_check_alone_checks_the_columns_before_the_data_becomes_the_reference(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_spec: DatasetSpec
) -> None:
    raw = pd.read_csv(importlib.resources.files("palmerpenguins") / "data" / "penguins.csv")
    log_clean(store, clean(raw, penguins_spec, "test").data, tmp_path)
    config = yaml.safe_load((DATASETS / "penguins.yaml").read_text())
    config["checks"]["ks_columns"] = ["body_mass"]
    wrong = tmp_path / "penguins.yaml"
    wrong.write_text(yaml.safe_dump(config))
    code, err = run_component(
        "data_check", ["--input_artifact", "clean_data:latest", "--dataset_config", str(wrong)], capsys
    )
    assert code == 1
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: data_check: 1 data test(s) failed on clean_data:v0: test_named_columns: ")
    assert "checks.ks_columns names column 'body_mass', which the data lacks" in line
    assert store.find("clean_data:reference") is None
