"""Promotion to `prod`: choice, gate, force, rollback, history, and two promotions racing."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlpipe.errors import StepError
from mlpipe.pipeline.cache import TAG_REUSED
from mlpipe.tracking import logged_models, promotion
from mlpipe.tracking.artifacts import OUT, ArtifactStore
from tests.conftest import (
    COMPONENTS_DIR,
    TrainedStore,
    load_component,
    run_component_params,
    run_main,
    subprocess_env,
)
from tests.wandb_records import isolate_wandb, offline_runs

DATASET = "conf/dataset/nyc_airbnb.yaml"


def move(n: int, kind: str, previous: str | None, new: str) -> dict[str, object]:
    return {"move": n, "kind": kind, "previous_version": previous, "new_version": new}


def test_better_respects_direction_and_tolerance() -> None:
    assert promotion.better(10.0, 10.0, "minimize")
    assert not promotion.better(10.5, 10.0, "minimize")
    assert promotion.better(10.5, 10.0, "minimize", tolerance=0.5)
    assert promotion.better(0.9, 0.8, "maximize") and not promotion.better(0.7, 0.8, "maximize")
    with pytest.raises(StepError, match="direction 'down'"):
        promotion.better(1.0, 2.0, "down")


def test_rollback_undoes_the_latest_promotion_not_yet_undone() -> None:
    moves = [move(1, "promoted", None, "1"), move(2, "promoted", "1", "2"), move(3, "forced", "2", "3")]
    assert promotion.rollback_target(moves)["move"] == 3
    assert promotion.rollback_target([*moves, move(4, "rollback", "3", "2")])["move"] == 2
    with pytest.raises(StepError, match="first to hold the alias"):
        promotion.rollback_target([*moves, move(4, "rollback", "3", "2"), move(5, "rollback", "2", "1")])
    with pytest.raises(StepError, match="no promotion left"):
        promotion.rollback_target([])


class Registry:
    """The trained store seen from this process, with the promote component run in process."""

    def __init__(self, trained: TrainedStore, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
        mlflow.set_tracking_uri(trained.uri)
        self.client = MlflowClient(trained.uri)
        experiment_id = self.client.get_experiment_by_name(trained.experiment).experiment_id
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
        self.store = ArtifactStore(experiment_id, self.client)
        self.trained = trained
        self.name = name

    def digest(self, label: str) -> str:
        """The model export digest of a pipeline run's train step."""
        parent = self.trained.runs[label]
        child = self.client.search_runs(
            [self.store.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent}' and tags.`mlpipe.step` = 'train'",
        )[0]
        return child.data.tags[f"{OUT}model_export"]

    def promote(self, label: str, *extra: str) -> MlflowClient:
        module = load_component("promote")
        argv = ["--model_name", self.name, "--candidates", f"runs:{self.trained.runs[label]}"]
        module.run(run_component_params("promote", [*argv, "--dataset_config", DATASET, *extra]))
        while mlflow.active_run():
            mlflow.end_run()
        return self.last_decision()

    def last_decision(self) -> dict[str, str]:
        run = self.client.search_runs(
            [self.store.experiment_id],
            "tags.`mlpipe.step` = 'promote'",
            order_by=["attributes.start_time DESC"],
        )[0]
        return {**run.data.tags, **{k: str(v) for k, v in run.data.metrics.items()}}

    def prod(self) -> tuple[str, str]:
        """(registry version holding prod, its digest); checks the artifact alias agrees."""
        version = self.client.get_model_version_by_alias(self.name, "prod")
        digest = version.tags[promotion.TAG_DIGEST]
        assert self.store.find("model_export:prod").digest == digest
        versions = self.client.search_model_versions(f"name = '{self.name}'")
        holders = [
            str(v.version)
            for v in versions
            if "prod" in self.client.get_model_version(self.name, v.version).aliases
        ]
        assert holders == [str(version.version)]  # exactly one
        return str(version.version), digest


@pytest.mark.slow
def test_promote_gate_force_rollback(trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(trained_store, monkeypatch, "gate_model")
    good, poor = registry.digest("good"), registry.digest("poor")

    assert registry.promote("poor")["decision"] == "promoted"  # nothing held prod
    assert registry.prod()[1] == poor
    assert registry.store.resolve("model_export:auto").digest == poor  # auto: prod once there is one

    decision = registry.promote("good")
    assert decision["decision"] == "promoted"
    assert float(decision["candidate_mae"]) < float(decision["prod_mae"])
    good_version, digest = registry.prod()
    assert digest == good

    decision = registry.promote("poor")  # worse on the same test data: the gate keeps prod
    assert decision["decision"] == "kept" and float(decision["candidate_mae"]) > float(decision["prod_mae"])
    assert registry.prod() == (good_version, good)

    assert registry.promote("poor", "--force", "true")["decision"] == "forced"
    assert registry.prod()[1] == poor
    assert registry.promote("poor")["decision"] == "already_prod"

    registry.promote("poor", "--rollback", "true")
    assert registry.prod() == (good_version, good)
    moves = promotion.history(registry.client, "gate_model")
    assert [(m["move"], m["kind"]) for m in moves] == [
        (1, "promoted"),
        (2, "promoted"),
        (3, "forced"),
        (4, "rollback"),
    ]
    assert [m["previous_version"] for m in moves] == [None, "1", "2", "1"]
    assert all(m["run_id"] and m["time"] for m in moves)
    # Poor was registered once, though promoted three times.
    assert len(registry.client.search_model_versions("name = 'gate_model'")) == 2


@pytest.mark.slow
def test_two_promotions_racing_end_with_one_winner(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(trained_store, monkeypatch, "race_model")
    env = subprocess_env(
        MLFLOW_TRACKING_URI=trained_store.uri, MLFLOW_EXPERIMENT_ID=registry.store.experiment_id
    )
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                str(COMPONENTS_DIR / "promote" / "run.py"),
                "--model_name",
                "race_model",
                "--candidates",
                f"runs:{trained_store.runs[label]}",
                "--dataset_config",
                DATASET,
            ],
            cwd=Path(os.getcwd()),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label in ("poor", "good")
    ]
    outputs = [p.communicate(timeout=300) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], [o[1][-2000:] for o in outputs]

    # Whatever the order, the better model ends in prod, and the history is one chain.
    assert registry.prod()[1] == registry.digest("good")
    moves = promotion.history(registry.client, "race_model")
    assert [m["move"] for m in moves] == list(range(1, len(moves) + 1))
    assert moves[0]["previous_version"] is None
    assert all(b["previous_version"] == a["new_version"] for a, b in itertools.pairwise(moves))
    assert moves[-1]["new_version"] == registry.prod()[0]
    with pytest.raises(mlflow.exceptions.MlflowException):
        registry.client.get_registered_model("race_model" + promotion.LOCK_SUFFIX)  # released


@pytest.mark.slow
def test_promote_runs_as_a_pipeline_step_and_records_its_move(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    done = run_main(["main.steps=promote", "promote.model_name=step_model"], trained_store.uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(trained_store.uri)
    version = client.get_model_version_by_alias("step_model", "prod")
    move = json.loads(client.get_registered_model("step_model").tags[f"{promotion.MOVE_TAG}000001"])
    assert move["new_version"] == str(version.version) and move["kind"] == "promoted"
    assert "promoted: candidate version 1" in done.stderr

    # test_model (model_artifact: auto) now tests the prod export, not the latest one.
    done = run_main(["main.steps=test_model"], trained_store.uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    experiment_id = client.get_experiment_by_name(trained_store.experiment).experiment_id
    tested = client.search_runs(
        [experiment_id], "tags.`mlpipe.step` = 'test_model'", order_by=["attributes.start_time DESC"]
    )[0]
    assert tested.data.tags["model_artifact"] == move["artifact"]

    # The registry version points at the export's logged model, which lists it; test_model's
    # metrics are linked to that model, computed on the test data.
    store = ArtifactStore(experiment_id, client)
    logged = logged_models.find(client, experiment_id, store.resolve(move["artifact"]).digest)
    assert logged is not None and version.source == f"models:/{logged.model_id}"
    assert {"name": "step_model", "version": version.version} in json.loads(
        client.get_logged_model(logged.model_id).tags["mlflow.modelVersions"]
    )
    linked = {(m.key, m.run_id): m for m in client.get_logged_model(logged.model_id).metrics}
    scored_by = tested.data.tags.get(TAG_REUSED, tested.info.run_id)  # another test may have run it
    assert linked[("mae", scored_by)].value == tested.data.metrics["mae"]
    assert linked[("mae", scored_by)].dataset_name == "test_data"
    assert [i.model_id for i in client.get_run(tested.info.run_id).inputs.model_inputs] == [logged.model_id]


@pytest.mark.slow
def test_a_promotion_is_mirrored_to_wandb(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs_dir = isolate_wandb(tmp_path / "wandb", monkeypatch)
    monkeypatch.setenv("MLPIPE_WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(runs_dir))
    registry = Registry(trained_store, monkeypatch, "mirrored_model")
    assert registry.promote("good")["decision"] == "promoted"
    [run] = [r for r in offline_runs(runs_dir) if r.job_type == "promote"]
    promoted = registry.store.resolve("model_export:prod")
    assert run.summary["promoted.prod"] == promoted.ref
    assert run.summary["promoted.prod.digest"] == promoted.digest
    assert {"prod", "latest"} <= set(run.artifact("model_export").aliases)


@pytest.mark.slow
def test_any_metric_test_model_logs_can_gate_a_promotion(tmp_path: Path) -> None:
    """One scoring path: promote scores as test_model does, so ROC AUC (which needs the class
    probabilities) gates a classifier's promotion with the value test_model logged."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fast = [
        "dataset=penguins",
        "main.executor=inprocess",
        "model.estimator.n_estimators=5",
        "model.estimator.n_jobs=1",
    ]
    done = run_main(fast, uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_main([*fast, "main.steps=promote", "promote.gate_metric=roc_auc"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    tested, promoted = (
        client.search_runs([experiment], f"tags.`mlpipe.step` = '{step}'")[0]
        for step in ("test_model", "promote")
    )
    assert promoted.data.tags["decision"] == "promoted"
    assert promoted.data.metrics["candidate_roc_auc"] == pytest.approx(tested.data.metrics["roc_auc"])
