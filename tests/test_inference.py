"""Batch inference: only new or changed rows scored, everything again for a new prod version, a
killed run resumed without a row recorded twice or lost, rows the model refuses rejected with the
reason, models side by side, images keyed by their path, and the ledger on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from mlpipe.data.kinds.table.new_rows import read_new_table
from mlpipe.data.spec import DatasetSpec
from mlpipe.data.tables import read_table
from mlpipe.errors import StepError
from mlpipe.inference import ledger as ledger_module
from mlpipe.inference.ledger import TABLE, Ledger, Scored
from mlpipe.pipeline.config import load
from mlpipe.pipeline.definition import selected_steps
from mlpipe.processes import stop_pid
from mlpipe.tracking import postgres
from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.server import free_port
from tests.conftest import (
    COMPONENTS_DIR,
    NYC_CSV,
    TrainedStore,
    load_component,
    run_component_params,
    run_main,
    subprocess_env,
)
from tests.test_promote import Registry

DATASET = "conf/dataset/nyc_airbnb.yaml"
ROWS = 2000


def ledger_rows(path: Path, model: str = "prod") -> pd.DataFrame:
    with sqlite3.connect(path) as connection:
        return pd.read_sql(f"SELECT * FROM {TABLE} WHERE model = ?", connection, params=(model,))


class Inference:
    """The trained store's registry and the inference component, run in this process."""

    def __init__(
        self, trained: TrainedStore, monkeypatch: pytest.MonkeyPatch, folder: Path, name: str
    ) -> None:
        self.registry = Registry(trained, monkeypatch, name)
        self.uri = trained.uri
        self.store: ArtifactStore = self.registry.store
        self.folder = folder
        self.ledger = folder / "ledger.db"
        self.name = name

    def argv(self, source: Path, *extra: str) -> list[str]:
        return [
            "--source",
            str(source),
            "--model_name",
            self.name,
            "--ledger_uri",
            f"sqlite:///{self.ledger}",
            "--dataset_config",
            DATASET,
            *extra,
        ]

    def run(self, source: Path, *extra: str) -> Run:
        module = load_component("batch_inference")
        module.run(run_component_params("batch_inference", self.argv(source, *extra)))
        while mlflow.active_run():
            mlflow.end_run()
        return self.last_run()

    def last_run(self) -> Run:
        return self.registry.client.search_runs(
            [self.store.experiment_id],
            "tags.`mlpipe.step` = 'inference'",
            order_by=["attributes.start_time DESC"],
        )[0]

    def output(self, run: Run, name: str) -> pd.DataFrame:
        version = self.store.version_with(name, self.store.outputs_of(run)[name])
        return read_table(self.store.download(version, self.folder / "fetched" / run.info.run_id), name)


def keys(rows: pd.DataFrame) -> pd.Series:
    """The ledger's key of each row: the dataset's id columns."""
    return rows["id"].astype("int64").astype(str) + "|" + rows["host_id"].astype(str)


def counts(run: Run) -> dict[str, int]:
    names = ("rows_in", "rows_new", "rows_changed", "rows_rescored", "rows_skipped", "rows_rejected")
    return {n: int(run.data.metrics[n]) for n in (*names, "rows_scored")}


@pytest.fixture
def inference_for(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[str], Inference]:
    """Inference against the trained store, for a registered model of this name."""
    return lambda name: Inference(trained_store, monkeypatch, tmp_path, name)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "new_listings.csv"
    pd.read_csv(NYC_CSV).head(ROWS).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_only_new_or_changed_rows_are_scored_and_a_new_prod_rescores_all(
    inference_for: Callable[[str], Inference], tmp_path: Path, source: Path
) -> None:
    inference = inference_for("inference_model")
    with pytest.raises(
        StepError, match=r"^inference: model 'prod': .* \(promote sets prod: -P steps=promote\)"
    ):
        inference.run(source)
    inference.registry.promote("poor")
    first = inference.run(source)
    assert counts(first) == {
        "rows_in": ROWS,
        "rows_new": ROWS,
        "rows_changed": 0,
        "rows_rescored": 0,
        "rows_skipped": 0,
        "rows_rejected": 0,
        "rows_scored": ROWS,
    }
    assert first.data.metrics["rows_per_second"] > 0 and "batch_latency_p95_s" in first.data.metrics
    predictions = inference.output(first, "predictions")
    assert len(predictions) == ROWS and predictions["model_version"].eq("models:/inference_model/1").all()
    assert predictions["prediction"].dtype == float and predictions["prediction"].notna().all()

    second = inference.run(source)
    assert counts(second)["rows_scored"] == 0 and counts(second)["rows_skipped"] == ROWS
    assert "rows_per_second" not in second.data.metrics
    # the same predictions, so the same artifact version
    assert (
        inference.store.outputs_of(second)["predictions"] == inference.store.outputs_of(first)["predictions"]
    )

    # edit 200 rows' features and 50 rows' host name (not a feature), add 100 rows
    rows = pd.read_csv(source)
    rows.loc[:199, "minimum_nights"] += 1
    rows.loc[300:349, "host_name"] = "someone else"
    rows.loc[400, "reviews_per_month"] = np.nan  # floats stay floats; the row counts as edited
    rows.loc[401, "minimum_nights"] = np.nan  # the integer column becomes floats: only this row changes
    added = pd.read_csv(NYC_CSV).iloc[ROWS : ROWS + 100]
    pd.concat([rows, added]).to_csv(source, index=False)
    third = inference.run(source)
    assert counts(third) == {
        "rows_in": ROWS + 100,
        "rows_new": 100,
        "rows_changed": 202,
        "rows_rescored": 0,
        "rows_skipped": ROWS - 202,
        "rows_rejected": 0,
        "rows_scored": 302,
    }
    ledger = ledger_rows(inference.ledger)
    assert len(ledger) == ROWS + 100
    edited = ledger.set_index("row_key").loc[keys(rows.head(200))]
    assert (edited["first_scored"] < edited["last_scored"]).all()

    # a new prod version: everything scored again; prod itself never moved by inference
    inference.registry.promote("good", "--force", "true")
    fourth = inference.run(source)
    assert counts(fourth)["rows_rescored"] == ROWS + 100 and counts(fourth)["rows_scored"] == ROWS + 100
    assert inference.registry.prod()[0] == "2"
    assert ledger_rows(inference.ledger)["model_version"].eq("models:/inference_model/2").all()
    full = inference.run(source, "--full", "true")
    assert counts(full)["rows_rescored"] == ROWS + 100


@pytest.mark.slow
def test_a_killed_run_resumes_with_the_remainder_only(
    inference_for: Callable[[str], Inference], tmp_path: Path, source: Path
) -> None:
    inference = inference_for("resumed_model")
    inference.registry.promote("good")
    env = subprocess_env(
        MLFLOW_TRACKING_URI=inference.uri, MLFLOW_EXPERIMENT_ID=inference.store.experiment_id
    )
    step = subprocess.Popen(
        [
            sys.executable,
            str(COMPONENTS_DIR / "batch_inference" / "run.py"),
            *inference.argv(source, "--batch_size", "50", "--workers", "2"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers are in its process group: stopped with it
    )
    committed = 0
    try:
        deadline = time.monotonic() + 120
        while committed < 200 and step.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            if inference.ledger.exists():
                # (the table may not be there yet)
                with sqlite3.connect(inference.ledger) as connection, suppress(sqlite3.OperationalError):
                    committed = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        os.killpg(step.pid, signal.SIGSTOP)  # freeze it half-way, then read what it committed
        with sqlite3.connect(inference.ledger) as connection:
            committed = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        os.killpg(step.pid, signal.SIGKILL)
    finally:
        if step.poll() is None:
            os.killpg(step.pid, signal.SIGKILL)
        step.wait(timeout=30)
    assert 0 < committed < ROWS and committed % 50 == 0  # whole batches only

    resumed = inference.run(source)
    assert counts(resumed)["rows_skipped"] == committed
    assert counts(resumed)["rows_scored"] == ROWS - committed
    ledger = ledger_rows(inference.ledger)
    assert len(ledger) == ROWS and ledger["row_key"].is_unique
    predictions = inference.output(resumed, "predictions")
    recorded = ledger.set_index("row_key").loc[keys(predictions)]
    assert np.allclose(recorded["prediction"].astype(float), predictions["prediction"])
    assert (recorded["model_version"].to_numpy() == predictions["model_version"].to_numpy()).all()
    scored_at = pd.to_datetime(recorded["last_scored"], utc=True)
    assert (scored_at.to_numpy() == predictions["scored_at"].to_numpy()).all()


@pytest.mark.slow
def test_rows_the_model_refuses_are_rejected_with_the_reason(
    inference_for: Callable[[str], Inference], tmp_path: Path, source: Path
) -> None:
    inference = inference_for("strict_model")
    inference.registry.promote("good")
    client = inference.registry.client
    client.set_registered_model_alias("strict_model", "challenger", "1")
    rows = pd.read_csv(source).astype({"minimum_nights": object})
    bad = list(range(5, 1000, 100))  # 10 rows, spread over the batches
    rows.loc[bad, "minimum_nights"] = [f"{n} nights" for n in range(10)]
    repeated = keys(rows.iloc[[19]]).iloc[0]
    rows.loc[20, ["id", "host_id"]] = rows.loc[19, ["id", "host_id"]]  # a repeated key
    rows["id"] = rows["id"].astype(float)
    rows.loc[21, "id"] = np.nan  # a missing one
    rows.to_csv(source, index=False)
    run = inference.run(source, "--batch_size", "300", "--models", "prod,challenger")
    assert counts(run)["rows_rejected"] == 12 and counts(run)["rows_scored"] == ROWS - 12
    rejected = inference.output(run, "rejected_rows")
    by_model = rejected[rejected["model"] == "prod"]
    assert by_model["row"].tolist() == [r + 1 for r in bad]
    assert by_model["reason"].iloc[0] == (
        "model input: column 'minimum_nights' has non-numeric value '0 nights' in data row 6; "
        "expected numbers"
    )
    refused = rejected[rejected["model"] == ""]
    assert refused["row"].tolist() == [21, 22]
    assert refused["reason"].tolist() == [
        f"key '{repeated}' repeats data row 20",
        "no key: column 'id' is empty",
    ]
    predictions = inference.output(run, "predictions")
    assert len(predictions) == ROWS - 12
    assert run.data.metrics["agreement_rate"] == 1.0  # the same version twice agrees with itself
    assert (predictions["challenger.prediction"] == predictions["prediction"]).all()


# -- images: keyed by their path, hashed by their bytes ------------------------------------------
def image_model(store: ArtifactStore, tmp_path: Path) -> str:
    """An (untrained) image classifier exported as the pipeline exports one, logged as model_export."""
    import torch

    from mlpipe.models.torch_export import export_model
    from tests.test_torch_model import classifier

    folder, _ = export_model(
        classifier(), "torchscript", torch.rand(4, 1, 8, 8) * 255, [str(d) for d in range(10)], tmp_path / "m"
    )
    client = MlflowClient()
    run = client.create_run(store.experiment_id)
    store.log(run.info.run_id, "model_export", folder, "model_export", "an image classifier")
    client.set_terminated(run.info.run_id)
    return store.resolve("model_export:latest").ref


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_image_folder_rescores_only_the_file_that_changed(
    store: ArtifactStore, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    from PIL import Image

    from tests.test_images import make_folder

    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    if backend == "postgresql":
        ledger = request.getfixturevalue("postgres_uri")
    folder = make_folder(tmp_path / "new", {"cats": 6, "dogs": 6}, size=(8, 8))
    (folder / "dogs" / "broken.png").write_bytes(b"not an image")
    model = image_model(store, tmp_path)
    argv = ["--source", str(folder), "--models", model, "--ledger_uri", ledger]
    argv += ["--dataset_config", "conf/dataset/digits.yaml"]

    def run(*extra: str) -> Run:
        load_component("batch_inference").run(run_component_params("batch_inference", [*argv, *extra]))
        while mlflow.active_run():
            mlflow.end_run()
        return MlflowClient().search_runs(
            [store.experiment_id], "tags.`mlpipe.step` = 'inference'", order_by=["attributes.start_time DESC"]
        )[0]

    first = run("--batch_size", "4", "--workers", "2")  # forked workers, the model loaded before
    assert counts(first)["rows_scored"] == 12 and counts(first)["rows_rejected"] == 1
    version = store.version_with("rejected_rows", store.outputs_of(first)["rejected_rows"])
    rejected = read_table(store.download(version, tmp_path / "rejected"), "rejected")
    assert rejected["path"].tolist() == ["dogs/broken.png"]
    assert rejected["reason"].iloc[0].startswith("not a readable image: cannot identify image file")

    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8), mode="L").save(folder / "cats" / "0.png")
    (folder / "cats" / "1.png").touch()  # a newer time, the same bytes
    second = run()
    assert counts(second)["rows_changed"] == 1 and counts(second)["rows_scored"] == 1
    assert counts(second)["rows_skipped"] == 11
    version = store.version_with("predictions", store.outputs_of(second)["predictions"])
    predictions = read_table(store.download(version, tmp_path / "predictions"), "predictions")
    assert sorted(predictions["path"]) == sorted(f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(6))
    probabilities = predictions[[f"probability.{d}" for d in range(10)]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (predictions["prediction"] == probabilities.argmax(axis=1).astype(str)).all()


# -- the ledger, on SQLite and on a throwaway PostgreSQL ------------------------------------------
@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (`make server`'s, alone) on a free port; stopped by its pid
    at the end of the session."""
    try:
        postgres.bin_dir()
    except StepError as e:
        pytest.skip(str(e))
    # Not under pytest's private tmp folder: as root, PostgreSQL runs as `postgres`, which must get in.
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-pg-"))
    folder.chmod(0o755)
    port = free_port()
    cluster = postgres.Cluster(folder / "postgres")
    pid = cluster.start(port)
    try:
        yield cluster.url(port, "mlpipe")  # names the pgpass file holding the password
    finally:
        stop_pid(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "sqlite-without-upsert"])
def test_the_ledger_keeps_one_row_per_key_and_when_it_was_first_scored(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'ledger' / 'ledger.db'}"  # its folder is made
    if backend == "postgresql":
        uri = request.getfixturevalue("postgres_uri")
    if backend == "sqlite-without-upsert":  # the path other databases take: delete, then insert
        monkeypatch.setattr(ledger_module, "UPSERT_DIALECTS", ())
    book = Ledger(uri, "inference")
    dataset = f"d{uuid.uuid4().hex[:6]}"  # the PostgreSQL server is the session's
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    book.record(
        dataset, "prod", "v1", "run1", [Scored("a", "h1", "1.5", None), Scored("b", "h2", "2.5", None)], early
    )
    book.record(dataset, "prod", "v2", "run2", [Scored("a", "h3", "3.5", '{"x": 1.0}')], late)
    book.record(dataset, "challenger", "v9", "run2", [Scored("a", "h3", "9", None)], late)
    assert book.known(dataset, "prod", ["a", "b", "c"]) == {"a": ("h3", "v2"), "b": ("h2", "v1")}
    entries = book.entries(dataset, "prod", ["a", "b"]).set_index("row_key")
    assert entries.loc["a", "prediction"] == "3.5" and entries.loc["a", "probabilities"] == '{"x": 1.0}'
    assert entries.loc["a", "first_scored"] == pd.Timestamp(early)
    assert entries.loc["a", "last_scored"] == pd.Timestamp(late)
    assert entries.loc["b", "run_id"] == "run1"
    book.close()


def test_a_ledger_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StepError, match=r"^inference: inference.ledger_uri 'nonsense' is not a database URL"):
        Ledger("nonsense", "inference")
    with pytest.raises(
        StepError, match=r"^inference: ledger postgresql://me:\*\*\*@127.0.0.1:9/x cannot be opened: "
    ):
        Ledger("postgresql://me:secret@127.0.0.1:9/x", "inference")


# -- a table as new data: keys and content hashes that survive a change of column types ---------
def test_a_tables_keys_and_hashes_do_not_depend_on_how_pandas_typed_a_column(nyc_spec: DatasetSpec) -> None:
    rows = pd.read_csv(NYC_CSV).head(50)
    first = read_new_table(rows, nyc_spec, None, "inference")
    assert first.keys[0] == f"{rows['id'][0]}|{rows['host_id'][0]}" and not first.refused
    edited = rows.astype({"minimum_nights": object, "id": float})
    edited.loc[3, "minimum_nights"] = "three"  # text in a number column: the column is text now
    edited.loc[4, "host_name"] = "not a feature"
    edited.loc[[0, 1, 2, 4, 5], "minimum_nights"] = edited.loc[[0, 1, 2, 4, 5], "minimum_nights"].astype(str)
    edited.loc[7, "availability_365"] = np.nan  # an integer column with a gap: floats now
    again = read_new_table(edited, nyc_spec, None, "inference")
    assert again.keys == first.keys
    changed = [i for i, (a, b) in enumerate(zip(first.hashes, again.hashes, strict=True)) if a != b]
    assert changed == [3, 7]
    with pytest.raises(StepError, match=r"^inference lacks key column\(s\) 'listing'; found: id, name"):
        read_new_table(rows, nyc_spec, ["listing"], "inference")


def test_a_table_without_ids_is_keyed_by_content_and_occurrence(nyc_spec: DatasetSpec) -> None:
    rows = pd.read_csv(NYC_CSV).head(50)
    doubled = pd.concat([rows, rows.head(2), rows.head(1)], ignore_index=True)  # row 1 three times
    first = read_new_table(doubled, nyc_spec, [], "inference")
    assert not first.refused and len(set(first.keys)) == 53  # duplicates are rows of their own
    assert first.key_columns.columns.tolist() == ["row_hash", "occurrence"]
    assert first.key_columns["occurrence"].tolist()[50:] == [2, 2, 3]
    assert first.keys[52] == f"{first.hashes[0]}#3" and first.keys[0] == first.hashes[0]
    edited = doubled.copy()
    edited.loc[10, "minimum_nights"] += 1  # one edit: that row's key alone changes
    again = read_new_table(edited, nyc_spec, [], "inference")
    assert [i for i in range(53) if again.keys[i] != first.keys[i]] == [10]


def test_a_source_without_a_feature_column_is_one_line(nyc_spec: DatasetSpec) -> None:
    rows = pd.read_csv(NYC_CSV).head(20).drop(columns=["minimum_nights", "room_type"])
    with pytest.raises(
        StepError,
        match=r"^inference: source 'x.csv' lacks feature column\(s\) 'minimum_nights', 'room_type'; "
        r"found: id, name, .*; expected every feature column of dataset 'nyc_airbnb'$",
    ):
        read_new_table(rows, nyc_spec, None, "inference: source 'x.csv'")


# -- in the pipeline -------------------------------------------------------------------------------
def test_main_steps_names_the_step_or_its_component(tmp_path: Path) -> None:
    def selected(*overrides: str) -> list[str]:
        cfg = load(list(overrides))
        return [s.name for s in selected_steps(cfg, tmp_path / "dataset.yaml", tmp_path / "model.yaml")]

    assert "inference" not in selected()  # opt-in
    assert selected("main.steps=batch_inference") == selected("main.steps=inference") == ["inference"]
    assert selected("main.steps='get_data,basic_cleaning'") == ["download", "basic_cleaning"]
    with pytest.raises(StepError, match=r"unknown step\(s\) 'train_torch'"):
        selected("main.steps=train_torch")  # the model config picks train_sklearn


@pytest.mark.slow
def test_the_pipeline_runs_it_as_the_issue_shows(
    inference_for: Callable[[str], Inference], tmp_path: Path, source: Path
) -> None:
    inference = inference_for("pipeline_model")
    inference.registry.promote("good")
    options = [
        "inference.model_name=pipeline_model",
        f"inference.source={source}",
        f"inference.ledger_uri=sqlite:///{inference.ledger}",
    ]
    done = run_main(["main.steps=batch_inference", *options], inference.uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{ROWS} rows in: {ROWS} new" in done.stderr
    assert counts(inference.last_run())["rows_scored"] == ROWS
