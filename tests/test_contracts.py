"""The step contracts: what is derived from them stays in step, values keep their types across
the command line, and the config must say exactly what a contract declares."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.pipeline import derived
from mlpipe.pipeline.components import discover
from mlpipe.pipeline.config import load
from mlpipe.pipeline.contract import ProjectPath, encode, typed
from mlpipe.pipeline.definition import pipeline_steps
from mlpipe.pipeline.scaffold import new_step
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import PROJECT_ROOT, subprocess_env
from tests.test_project_root import copy_checkout


def test_mlproject_files_and_readme_table_follow_the_contracts() -> None:
    stale = [
        str(path.relative_to(PROJECT_ROOT))
        for path, text in derived.expected_files().items()
        if path.read_text() != text
    ]
    assert not stale, f"{stale} differ from the contracts: run `make contracts`"


def test_every_component_shares_the_project_environment() -> None:
    assert not list((PROJECT_ROOT / "components").glob("*/conda.yml"))
    assert all(
        "conda_env: ../../conda.yml" in p.read_text()
        for p in (PROJECT_ROOT / "components").glob("*/MLproject")
    )


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        (0.2, float, 0.2),
        (42, int, 42),
        (True, bool, True),
        (False, bool, False),
        (None, str | None, None),
        ("label", str | None, "label"),
        (["a", "b"], list[str], ["a", "b"]),
        ("clean_data:latest", str, "clean_data:latest"),
    ],
)
def test_values_cross_the_command_line_with_their_types(value, annotation, expected) -> None:
    assert typed(encode(value), annotation, "here") == expected
    assert typed(value, annotation, "here") == expected


def test_paths_are_taken_from_the_project_root_and_urls_left_alone() -> None:
    assert typed("conf/dataset/penguins.yaml", ProjectPath, "here") == str(
        PROJECT_ROOT / "conf/dataset/penguins.yaml"
    )
    assert typed("https://example.org/x.csv", ProjectPath, "here") == "https://example.org/x.csv"


@pytest.mark.parametrize(
    ("value", "annotation", "message"),
    [
        ("abc", float, "here is 'abc'; expected a number"),
        ("4.5", int, "here is 4.5; expected an integer"),
        ("maybe", bool, "here is 'maybe'; expected true or false"),
        (None, float, "here is null; expected a number"),
        (True, int, "here is True; expected an integer"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line(value, annotation, message) -> None:
    with pytest.raises(StepError, match=message):
        typed(value, annotation, "here")


def test_each_contract_declares_typed_fields_with_help() -> None:
    for name, component in discover().items():
        for parameter in component.contract.parameters():
            assert parameter.help, f"{name}: parameter {parameter.name} has no help text"
        assert dataclasses.is_dataclass(component.contract.params)


def steps_for(tmp_path: Path, *overrides: str):
    return pipeline_steps(load(list(overrides)), tmp_path / "dataset.yaml", tmp_path / "model.yaml")


def test_the_pipeline_fills_each_step_from_its_config_section(tmp_path: Path) -> None:
    steps = {
        s.name: s for s in steps_for(tmp_path, "data_split.random_seed=7", "data_check.ks_sample_size=50")
    }
    assert steps["data_split"].params["random_seed"] == 7
    assert steps["data_check"].params["ks_sample_size"] == 50
    assert steps["data_check"].params["dataset_config"] == str(tmp_path / "dataset.yaml")
    assert steps["data_split"].params["stratify_by"] == "neighbourhood_group"
    assert steps["train"].component == "train_sklearn" and steps["train"].after == ("data_check",)
    assert steps["test_model"].reads == {
        "model_artifact": "model_export:auto",
        "test_artifact": "test_data:latest",
    }
    images = {s.name: s for s in steps_for(tmp_path, "dataset=digits", "model=cnn")}
    assert images["train"].component == "train_torch"
    assert "promote" not in steps and "promote" in {s.name for s in steps_for(tmp_path, "main.steps=promote")}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+data_check.kl_treshold=0.1",
            r"section 'data_check' has 'kl_treshold', which components/data_check/run.py does not declare",
        ),
        (
            "~data_check.ks_alpha",
            r"section 'data_check' lacks 'ks_alpha'",
        ),
        (
            "data_check.kl_threshold=high",
            r"config data_check: parameter 'kl_threshold' is 'high'; expected a number",
        ),
        (
            "data_split.random_seed=4.5",
            r"config data_split: parameter 'random_seed' is 4.5; expected an integer",
        ),
        (
            "train.component=train_xgboost",
            r"train.component is 'train_xgboost'; expected one of train_sklearn, train_torch",
        ),
    ],
)
def test_a_config_that_disagrees_with_a_contract_is_one_line(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(StepError, match=message) as info:
        steps_for(tmp_path, override)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_scaffolded_step_runs_in_the_pipeline(tmp_path: Path) -> None:
    """`make new-step`: one command gives a step that runs alone and, named in main.steps, in the
    pipeline after the step that writes what it reads."""
    root = copy_checkout(tmp_path / "project")
    written = new_step("row_report", "clean_data", "row_report_data", "copies the clean data", root)
    assert [p.relative_to(root).as_posix() for p in written] == [
        "components/row_report/run.py",
        "tests/test_step_row_report.py",
        "config.yaml",
    ]
    env = subprocess_env(
        MLPIPE_PROJECT_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    derive = subprocess.run(
        [sys.executable, "-m", "mlpipe.pipeline.derived"],
        cwd=root,
        env={**env, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
    )
    assert derive.returncode == 0, derive.stderr
    assert (root / "components" / "row_report" / "MLproject").is_file()
    assert (
        "| `row_report` | `row_report` | `clean_data` | `row_report_data` |"
        in (root / "README.md").read_text()
    )
    done = subprocess.run(
        [
            sys.executable,
            str(root / "main.py"),
            "dataset=penguins",
            "main.steps='download,basic_cleaning,row_report'",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    store = ArtifactStore(client.get_experiment_by_name("penguins").experiment_id, client)
    assert (
        store.resolve("row_report_data:latest").metadata["rows"]
        == store.resolve("clean_data:latest").metadata["rows"]
    )
    # and its generated test passes in that project
    shutil.rmtree(root / ".pytest_cache", ignore_errors=True)
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_step_row_report.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
