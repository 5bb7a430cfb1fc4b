"""The image path through the real steps (in-process, real store): download, cleaning, the
image data checks against the reference, and the split's error for a class too small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import COMPONENTS_DIR, CONF_DIR, run_component, subprocess_env
from tests.test_images import make_folder


def data_check(store: ArtifactStore, *argv: str) -> tuple[int, str]:
    """data_check runs pytest itself: in its own process, as the pipeline runs it."""
    done = subprocess.run(
        [sys.executable, str(COMPONENTS_DIR / "data_check" / "run.py"), *argv],
        env=subprocess_env(MLFLOW_EXPERIMENT_ID=store.experiment_id),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def dataset_config(tmp_path: Path, **checks: object) -> Path:
    config = yaml.safe_load((CONF_DIR / "dataset" / "digits.yaml").read_text())
    config["checks"] = {"rows": [4, 1000], "min_per_class": 2, "shape": [1, 5, 6], **checks}
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fetch_and_clean(folder: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_component("get_data", ["--source", str(folder), "--dataset_config", str(config)], capsys)
    assert code == 0, err
    code, err = run_component("basic_cleaning", ["--dataset_config", str(config)], capsys)
    assert code == 0, err


def test_image_checks_pass_then_flag_class_drift(
    tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    config = dataset_config(tmp_path, classes=["a", "b"], drift_columns=["label"], ks_columns=["brightness"])
    fetch_and_clean(make_folder(tmp_path / "first", {"a": 20, "b": 20}), config, capsys)
    code, err = data_check(store, "--dataset_config", str(config))
    assert code == 0, err
    assert store.find("clean_data:reference") is not None

    fetch_and_clean(make_folder(tmp_path / "second", {"a": 20, "b": 3}), config, capsys)
    code, err = data_check(store, "--dataset_config", str(config), "--kl_threshold", "0.1")
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: data_check: 1 data test(s) failed on clean_data:v1")
    assert "test_category_drift: AssertionError: KL divergence from the reference at or above 0.1" in last
    assert store.find("clean_data:reference").version == 0  # the reference did not move


def test_image_checks_name_what_is_wrong(
    tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    config = dataset_config(tmp_path, classes=["a", "b", "c"], min_contrast=300)
    fetch_and_clean(make_folder(tmp_path / "f", {"a": 3, "b": 3}), config, capsys)
    code, err = data_check(store, "--dataset_config", str(config))
    assert code == 1
    assert "test_known_classes: AssertionError: unknown classes [], missing classes ['c']" in err
    assert "test_no_blank_images: AssertionError: 6 image(s) with contrast below 300" in err
    assert store.find("clean_data:reference") is None


def test_split_refuses_a_class_too_small(
    tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    config = dataset_config(tmp_path)
    fetch_and_clean(make_folder(tmp_path / "f", {"a": 6, "rare": 1}), config, capsys)
    argv = ["--dataset_config", str(config), "--stratify_by", "label"]
    code, err = run_component("data_split", argv, capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: data_split: clean_data:v0 (images.npz): class 'rare' (folder 'rare/') has 1 image(s); "
        "a stratified split needs at least 2 per class (1 class(es) short: rare)"
    )
    assert store.versions("trainval_data") == [] and store.versions("test_data") == []
