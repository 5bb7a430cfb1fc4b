"""Promotion when things go wrong: never served from the cache, a prod model that no longer loads,
test data whose files are gone. Real pipelines in this process (penguins, small forests)."""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking import promotion
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import artifact_files, reused_steps, run_pipeline


class Promotions:
    """One experiment with a model in prod (A) and a newer export (B) that is not."""

    def __init__(self, project_name: str, tmp_path: Path) -> None:
        self.project, self.tmp = project_name, tmp_path
        self.client = MlflowClient()
        run_pipeline(project_name, tmp_path)
        experiment_id = self.client.get_experiment_by_name(project_name).experiment_id
        self.store = ArtifactStore(experiment_id, self.client)
        self.a = self.store.resolve("model_export:latest")

    def promote(self, *overrides: str) -> dict[str, str]:
        """`main.steps=promote` of the latest export; the promote run's tags."""
        children = run_pipeline(
            self.project,
            self.tmp,
            "main.steps=promote",
            f"promote.model_name={self.project}",
            "promote.candidates=artifact",
            *overrides,
        )
        assert not reused_steps(children)
        return self.client.get_run(children["promote"]).data.tags

    def train_b(self) -> None:
        run_pipeline(self.project, self.tmp, "main.steps=train", "model.estimator.max_depth=2")
        self.b = self.store.resolve("model_export:latest")
        assert self.b.digest != self.a.digest

    def prod(self) -> str:
        """The digest prod holds, in the registry and on the artifact alike."""
        version = self.client.get_model_version_by_alias(self.project, "prod")
        assert self.store.resolve("model_export:prod").digest == version.tags[promotion.TAG_DIGEST]
        return version.tags[promotion.TAG_DIGEST]

    def prod_files(self) -> Path:
        """The folder the prod version is loaded from: its logged model's copy of the export."""
        source = self.client.get_model_version_by_alias(self.project, "prod").source
        assert source.startswith("models:/m-"), source  # the registry keeps no model_id: the source says it
        location = self.client.get_logged_model(source.removeprefix("models:/")).artifact_location
        return Path(urllib.parse.urlparse(location).path)

    def registered(self) -> list[str]:
        return [
            v.tags[promotion.TAG_DIGEST] for v in self.client.search_model_versions(f"name='{self.project}'")
        ]


@pytest.fixture
def promotions(project_name: str, tmp_path: Path) -> Promotions:
    return Promotions(project_name, tmp_path)


def test_force_and_rollback_move_prod_every_time_they_run(promotions: Promotions) -> None:
    """The issue's scenario: promote, train another model, then force, rollback, force, rollback
    with the same parameters and inputs; each one moves prod (none is served from the cache)."""
    assert promotions.promote()["decision"] == "promoted"
    promotions.train_b()
    for _ in range(2):
        assert promotions.promote("promote.force=true")["decision"] in ("promoted", "forced")
        assert promotions.prod() == promotions.b.digest
        assert promotions.promote("promote.rollback=true")["decision"] == "rollback"
        assert promotions.prod() == promotions.a.digest
    kinds = [m["kind"] for m in promotion.history(promotions.client, promotions.project)]
    assert len(kinds) == 5 and kinds[2::2] == ["rollback", "rollback"]


def corrupt(path: Path) -> None:
    """Cut a file short, as a full disk or an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_prod_model_that_cannot_be_loaded_is_named_and_force_replaces_it(
    promotions: Promotions, caplog: pytest.LogCaptureFixture
) -> None:
    promotions.promote()
    promotions.train_b()
    corrupt(promotions.prod_files() / "model.pkl")
    with pytest.raises(StepError) as failed:
        promotions.promote()
    assert str(failed.value).startswith(
        f"main: step 'promote' failed: promote: prod model v1 of '{promotions.project}' cannot be loaded: "
    )
    assert str(failed.value).endswith("; promote.force=true replaces it")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert promotions.registered() == [promotions.a.digest]  # the candidate was not registered

    assert promotions.promote("promote.force=true")["decision"] == "forced"
    assert promotions.prod() == promotions.b.digest
    assert sorted(promotions.registered()) == sorted([promotions.a.digest, promotions.b.digest])


def test_test_data_whose_files_are_gone_stops_promote_with_one_line(
    promotions: Promotions, caplog: pytest.LogCaptureFixture
) -> None:
    test_data = promotions.store.resolve("test_data:latest")
    for file in artifact_files(promotions.store, test_data).iterdir():
        file.unlink()
    caplog.set_level(logging.INFO)
    with pytest.raises(StepError) as failed:
        promotions.promote()
    assert str(failed.value) == (
        "main: step 'promote' failed: the files of artifact test_data:v0 are gone from the artifact "
        f"store ({test_data.uri}); run data_split again to write them (main.force_steps=[data_split])"
    )
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert promotions.registered() == []

    # The recovery the message names: the split runs again and promote goes through.
    run_pipeline(promotions.project, promotions.tmp, "main.steps=data_split", "main.force_steps=[data_split]")
    assert promotions.promote()["decision"] == "promoted"
