"""Artifact files lost from the artifact store: only what can still be read is reused; a version
whose files are gone is produced again and then read from files that exist. Real pipelines in
this process (penguins), with the files deleted from the real artifact folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import artifact_files, reused_steps, run_pipeline

ALL = {"download", "basic_cleaning", "data_check", "data_split", "train", "test_model"}


def lose(store: ArtifactStore, reference: str) -> None:
    """Delete the files of a version, as a cleaned-up disk or a lost bucket leaves them."""
    folder = artifact_files(store, store.resolve(reference))
    shutil.rmtree(folder)


def readable(store: ArtifactStore, reference: str, tmp_path: Path) -> bool:
    version = store.resolve(reference)
    return store.download(version, tmp_path / "check" / version.ref.replace(":", "-")).exists()


def test_lost_clean_data_is_produced_again_and_the_store_points_at_files_that_exist(
    project_name: str, tmp_path: Path
) -> None:
    run_pipeline(project_name, tmp_path)
    store = ArtifactStore(MlflowClient().get_experiment_by_name(project_name).experiment_id)
    lost = store.resolve("clean_data:latest")

    # An unchanged rerun: cleaning runs again (its output is gone), the rest is reused.
    lose(store, "clean_data:latest")
    children = run_pipeline(project_name, tmp_path)
    assert reused_steps(children) == ALL - {"basic_cleaning"}
    again = store.resolve("clean_data:latest")
    assert (again.ref, again.digest) == (lost.ref, lost.digest)  # the same content, the same version
    assert again.run_id == children["basic_cleaning"] and readable(store, "clean_data:v0", tmp_path)

    # Forcing the step repairs it too, and a change downstream reads the repaired files.
    lose(store, "clean_data:latest")
    children = run_pipeline(
        project_name, tmp_path, "main.force_steps=[basic_cleaning]", "data_split.test_size=0.3"
    )
    assert reused_steps(children) == {"download", "data_check"}
    assert readable(store, "clean_data:latest", tmp_path)

    # So does switching the cache off.
    lose(store, "clean_data:latest")
    lose(store, "raw_data:latest")
    assert reused_steps(run_pipeline(project_name, tmp_path, "main.cache=false")) == set()
    assert readable(store, "clean_data:latest", tmp_path) and readable(store, "raw_data:latest", tmp_path)
    assert [len(store.versions(n)) for n in ("raw_data", "clean_data")] == [1, 1]


def test_a_version_whose_files_are_gone_is_one_line_naming_the_step_to_rerun(
    project_name: str, tmp_path: Path
) -> None:
    run_pipeline(project_name, tmp_path, "main.steps='download,basic_cleaning'")
    store = ArtifactStore(MlflowClient().get_experiment_by_name(project_name).experiment_id)
    version = store.resolve("clean_data:latest")
    lose(store, "clean_data:latest")
    with pytest.raises(StepError) as failed:
        run_pipeline(project_name, tmp_path, "main.steps=data_split")
    assert str(failed.value) == (
        "main: step 'data_split' failed: the files of artifact clean_data:v0 are gone from the artifact "
        f"store ({version.uri}); run basic_cleaning again to write them "
        "(main.force_steps=[basic_cleaning])"
    )
