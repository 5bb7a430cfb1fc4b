"""Mistakes in the files a user writes end in one line naming the file and the line (or the key),
through main.py and Hydra as through a component run alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.errors import StepError
from mlpipe.models.sklearn_model import build_model
from tests.conftest import DATASETS, PROJECT_ROOT, run_component, subprocess_env

BROKEN_YAML = """name: broken
kind: table
columns:
  numeric: [latitude, longitude
target: price
"""
YAML_ERROR = "YAML syntax error at line 5, column 7: "  # then the parser's words


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_dataset_yaml_with_a_syntax_error_is_one_line_in_a_component(
    store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML)
    code, err = run_component(
        "basic_cleaning", ["--dataset_config", str(broken), "--input_artifact", "raw_data:latest"], capsys
    )
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"error: basic_cleaning: dataset config {broken}: {YAML_ERROR}")


@pytest.fixture
def project_with_broken_dataset(tmp_path: Path) -> Path:
    """A copy of the project (code and shipped configs linked) with one more dataset config,
    which has a syntax error."""
    root = tmp_path / "project"
    (root / "conf" / "dataset").mkdir(parents=True)
    for name in ("main.py", "config.yaml", "MLproject"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    for name in ("components", "src", "data"):
        (root / name).symlink_to(PROJECT_ROOT / name)
    for group in ("model", "hparams_search"):
        (root / "conf" / group).symlink_to(PROJECT_ROOT / "conf" / group)
    (root / "conf" / "dataset" / "nyc_airbnb.yaml").symlink_to(DATASETS / "nyc_airbnb.yaml")
    (root / "conf" / "dataset" / "broken.yaml").write_text(BROKEN_YAML)
    return root


@pytest.mark.parametrize("overrides", [["dataset=broken"], ["dataset=broken", "main.steps=download"]])
def test_a_dataset_yaml_with_a_syntax_error_is_one_line_through_main(
    project_with_broken_dataset: Path, fresh_tracking_uri: str, overrides: list[str]
) -> None:
    root = project_with_broken_dataset
    done = subprocess.run(
        [sys.executable, str(root / "main.py"), *overrides],
        cwd=root,
        env=subprocess_env(MLFLOW_TRACKING_URI=fresh_tracking_uri, MLPIPE_PROJECT_ROOT=str(root)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    broken = root / "conf" / "dataset" / "broken.yaml"
    [line] = error_lines(done.stderr)
    assert line.startswith(f"error: main: {broken}: {YAML_ERROR}")


def test_a_misspelled_estimator_argument_keeps_its_cause(nyc_spec) -> None:
    config = {"estimator": {"_target_": "sklearn.ensemble.RandomForestRegressor", "max_deph": 5}}
    with pytest.raises(StepError) as failed:
        build_model(nyc_spec, config)
    assert str(failed.value) == (
        "model config: cannot build estimator sklearn.ensemble.RandomForestRegressor: "
        "TypeError: RandomForestRegressor.__init__() got an unexpected keyword argument 'max_deph'"
    )
