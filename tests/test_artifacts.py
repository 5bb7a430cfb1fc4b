"""Named artifact versions against a real temporary MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore, parse_reference
from tests.conftest import artifact_files


def produce(store: ArtifactStore, path: Path, name: str = "thing", fail: bool = False) -> str:
    run = MlflowClient().create_run(store.experiment_id)
    store.log(run.info.run_id, name, path, type="data", description="d", metadata={"k": 1})
    MlflowClient().set_terminated(run.info.run_id, "FAILED" if fail else "FINISHED")
    return run.info.run_id


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / text / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_versions_count_up_and_identical_content_is_the_same_version(store: ArtifactStore, tmp_path: Path):
    produce(store, write(tmp_path, "a"))
    produce(store, write(tmp_path, "b"))
    produce(store, write(tmp_path, "a"))
    versions = store.versions("thing")
    assert [v.ref for v in versions] == ["thing:v0", "thing:v1"]
    # the last producer wrote content `a` again: `latest` points back to v0
    assert store.resolve("thing:latest").ref == "thing:v0"
    assert store.resolve("thing").ref == "thing:v0"
    assert versions[0].metadata == {"k": 1} and versions[0].type == "data"


def test_identical_content_is_not_uploaded_twice(store: ArtifactStore, tmp_path: Path):
    first = produce(store, write(tmp_path, "a"))
    second = produce(store, write(tmp_path, "a"))
    assert MlflowClient().list_artifacts(second) == []
    assert store.resolve("thing:v0").run_id == first
    assert {r.info.run_id for r in store.producers(store.resolve("thing:v0"))} == {first, second}


def test_files_found_gone_are_uploaded_again_and_read_from_there(store: ArtifactStore, tmp_path: Path):
    first = produce(store, write(tmp_path, "a"))
    shutil.rmtree(artifact_files(store, store.resolve("thing:v0")))
    assert not store.files_exist(store.resolve("thing:v0"))
    with pytest.raises(StepError, match=r"the files of artifact thing:v0 are gone from the artifact store"):
        store.download(store.resolve("thing:v0"), tmp_path / "lost")
    second = produce(store, write(tmp_path, "a"))
    version = store.resolve("thing:v0")
    assert version.run_id == second and store.files_exist(version)
    assert store.download(version, tmp_path / "dl").read_text() == "a"
    # A later run pointing at the first upload (a reuse record of an old run) does not shadow it.
    record = MlflowClient().create_run(
        store.experiment_id, tags=store.lineage_tags(MlflowClient().get_run(first))
    )
    MlflowClient().set_terminated(record.info.run_id)
    assert store.resolve("thing:latest").run_id == second
    assert [v.ref for v in store.versions("thing")] == ["thing:v0"]


def test_a_failed_run_creates_no_version(store: ArtifactStore, tmp_path: Path):
    produce(store, write(tmp_path, "a"), fail=True)
    assert store.versions("thing") == []
    with pytest.raises(StepError, match="not found"):
        store.resolve("thing:latest")


def test_a_running_run_creates_no_version_until_it_finishes(store: ArtifactStore, tmp_path: Path):
    run = MlflowClient().create_run(store.experiment_id)
    store.log(run.info.run_id, "thing", write(tmp_path, "a"), "data", "d")
    assert store.versions("thing") == []
    MlflowClient().set_terminated(run.info.run_id)
    assert [v.ref for v in store.versions("thing")] == ["thing:v0"]


def test_aliases_and_download(store: ArtifactStore, tmp_path: Path):
    produce(store, write(tmp_path, "a"))
    produce(store, write(tmp_path, "b"))
    store.set_alias(store.resolve("thing:v0"), "reference")
    ref = store.resolve("thing:reference")
    assert ref.ref == "thing:v0" and "reference" in ref.aliases
    assert store.download(ref, tmp_path / "dl").read_text() == "a"
    with pytest.raises(StepError, match="not 'latest'"):
        store.set_alias(ref, "latest")


def test_folder_artifacts(store: ArtifactStore, tmp_path: Path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("x")
    (folder / "sub" / "weights").write_text("w")
    produce(store, folder, name="model_export")
    version = store.resolve("model_export:latest")
    local = store.download(version, tmp_path / "dl")
    assert (local / "sub" / "weights").read_text() == "w"
    assert version.uri == f"runs:/{version.run_id}/model_export"


def test_lineage_both_ways(store: ArtifactStore, tmp_path: Path):
    producer = produce(store, write(tmp_path, "a"))
    version = store.resolve("thing:latest")
    with mlflow.start_run(experiment_id=store.experiment_id) as consumer:
        store.record_use(consumer.info.run_id, version)
    assert [r.info.run_id for r in store.consumers(version)] == [consumer.info.run_id]
    consumer_run = MlflowClient().get_run(consumer.info.run_id)
    assert store.inputs_of(consumer_run) == {"thing": version.digest}
    assert store.outputs_of(MlflowClient().get_run(producer)) == {"thing": version.digest}


def test_unknown_versions_and_bad_references(store: ArtifactStore, tmp_path: Path):
    produce(store, write(tmp_path, "a"))
    with pytest.raises(StepError, match=r"thing:v7.*known versions of 'thing': thing:v0 \[latest\]"):
        store.resolve("thing:v7")
    with pytest.raises(StepError, match="expected name:latest"):
        parse_reference("bad name:v1")
    assert parse_reference("x:prod") == ("x", "prod")
