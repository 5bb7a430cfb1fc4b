"""Shared fixtures: a real temporary MLflow store, small real data, and runners for components
(in-process, for speed) and for `mlflow run` (subprocesses, as a user runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import mlflow
import pandas as pd
import pytest

from mlpipe import project
from mlpipe.data.spec import DatasetSpec
from mlpipe.pipeline import components
from mlpipe.tracking import store as tracking_store
from mlpipe.tracking.artifacts import ArtifactStore, ArtifactVersion

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMPONENTS_DIR = PROJECT_ROOT / "components"
CONF_DIR = PROJECT_ROOT / "conf"
os.environ[project.ENV_ROOT] = str(PROJECT_ROOT)  # the project under test, for every process
NYC_CSV = PROJECT_ROOT / "data" / "nyc_airbnb" / "sample1.csv"
DATASETS = CONF_DIR / "dataset"
RUN_VARS = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(scope="session")
def session_store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the session: creating its schema costs seconds, so tests share it
    and each gets an experiment of its own (the artifacts' namespace)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """The pipeline hands settings to its steps through os.environ: undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def never_the_project_store(session_store_uri: str) -> Iterator[None]:
    """No test may write to the project's own mlflow.db by accident."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", session_store_uri)
        mlflow.set_tracking_uri(session_store_uri)
        yield


@pytest.fixture
def tracking_uri(session_store_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test store, for this process and its children."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", session_store_uri)
    for var in RUN_VARS:
        monkeypatch.delenv(var, raising=False)
    mlflow.set_tracking_uri(session_store_uri)
    yield session_store_uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def fresh_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A brand-new SQLite file, for tests about creating the store itself."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in RUN_VARS:
        monkeypatch.delenv(var, raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def experiment_id(tracking_uri: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    experiment = tracking_store.ensure_experiment(f"{request.node.name}-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    return experiment


@pytest.fixture
def store(experiment_id: str) -> ArtifactStore:
    return ArtifactStore(experiment_id)


@pytest.fixture(scope="session")
def nyc_spec() -> DatasetSpec:
    return DatasetSpec.from_file(DATASETS / "nyc_airbnb.yaml")


@pytest.fixture(scope="session")
def penguins_spec() -> DatasetSpec:
    return DatasetSpec.from_file(DATASETS / "penguins.yaml")


@pytest.fixture(scope="session")
def nyc_raw() -> pd.DataFrame:
    return pd.read_csv(NYC_CSV)


@pytest.fixture
def nyc_small(nyc_raw: pd.DataFrame) -> pd.DataFrame:
    return nyc_raw.head(600).copy()


def load_component(name: str) -> ModuleType:
    """A component's run.py as a module (components are folders, not packages)."""
    return components.load(COMPONENTS_DIR / name).module


def run_component_params(name: str, argv: list[str]):
    """A component's params as its command line gives them (the rest from config.yaml)."""
    from mlpipe.pipeline.step import parse_args

    module = load_component(name)
    return parse_args(module.CONTRACT, argv, COMPONENTS_DIR / name)


def run_component(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run a component's __main__ in this process; return (exit code, stderr)."""
    module = load_component(name)
    try:
        from mlpipe.pipeline.step import main

        main(module.CONTRACT, module.run, argv, COMPONENTS_DIR / name)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        while mlflow.active_run():
            mlflow.end_run()
    return code, capsys.readouterr().err


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell with the project's venv active; Hydra's output folders
    go to a temporary folder instead of the project's outputs/, and W&B is off unless asked."""
    env = {k: v for k, v in os.environ.items() if k not in RUN_VARS}
    env.setdefault("MLPIPE_OUTPUT_ROOT", tempfile.mkdtemp(prefix="mlpipe-outputs-"))
    env.setdefault("MLPIPE_WANDB_MODE", "disabled")  # W&B's own tests turn it on
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def mlflow_run(
    args: list[str], tracking_uri: str, cwd: Path = PROJECT_ROOT, timeout: int = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", *args],
        cwd=cwd,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- the pipeline in this process: penguins, steps in process, small forests (about 1.5 s a run)
FAST_PIPELINE = (
    "dataset=penguins",
    "main.executor=inprocess",
    "model.estimator.n_estimators=10",
    "model.estimator.n_jobs=1",
)


def run_pipeline(project_name: str, tmp_path: Path, *overrides: str) -> dict[str, str]:
    """Run the pipeline in this process on the test store; return step -> child run id."""
    from mlpipe.pipeline.config import load
    from mlpipe.pipeline.orchestrator import Pipeline

    cfg = load([*FAST_PIPELINE, f"main.project_name={project_name}", *overrides])
    return Pipeline(cfg, tmp_path / uuid.uuid4().hex[:6]).run()


def reused_steps(children: dict[str, str]) -> set[str]:
    """The steps of a pipeline run that were reused from the cache."""
    from mlpipe.pipeline.cache import TAG_REUSED

    client = mlflow.MlflowClient()
    return {step for step, run_id in children.items() if TAG_REUSED in client.get_run(run_id).data.tags}


def artifact_files(store: ArtifactStore, version: ArtifactVersion) -> Path:
    """The local folder holding a version's files in a local artifact store."""
    uri = store.client.get_run(version.run_id).info.artifact_uri
    return Path(urllib.parse.urlparse(uri).path) / version.name


@pytest.fixture
def project_name(tracking_uri: str) -> str:
    """An experiment of its own (the artifacts' namespace) for a pipeline run in this process."""
    return f"pipeline-{uuid.uuid4().hex[:8]}"


# -- a store where the data steps ran once and two models were trained (sweeps, promotion, serving)
def run_main(
    args: list[str], tracking_uri: str, tmp: Path, timeout: int = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python main.py ...` as a user runs it (with `env` added), Hydra's output dirs under `tmp`."""
    dirs = [
        f"hydra.run.dir={tmp}/outputs/${{now:%H-%M-%S-%f}}",
        f"hydra.sweep.dir={tmp}/multirun/${{now:%H-%M-%S-%f}}",
    ]
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "main.py"), *dirs, *args],  # args may end in -m
        cwd=PROJECT_ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class TrainedStore:
    """Two model exports of different quality, with their pipeline (parent) run ids."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.experiment = "nyc_airbnb"
        self.runs: dict[str, str] = {}  # "good" / "poor" -> pipeline run id

    def train(self, label: str, *overrides: str) -> str:
        done = run_main(["main.steps=train", "model.estimator.n_jobs=1", *overrides], self.uri, self.root)
        assert done.returncode == 0, done.stderr[-3000:]
        client = mlflow.MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(self.experiment)
        parent = client.search_runs(
            [experiment.experiment_id],
            "tags.`mlpipe.pipeline` = 'true'",
            order_by=["attributes.start_time DESC"],
        )[0]
        self.runs[label] = parent.info.run_id
        return parent.info.run_id


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    store = TrainedStore(tmp_path_factory.mktemp("trained_store"))
    data_steps = "main.steps='download,basic_cleaning,data_check,data_split'"
    done = run_main([data_steps], store.uri, store.root)
    assert done.returncode == 0, done.stderr[-3000:]
    store.train("good", "model.estimator.n_estimators=8")
    store.train("poor", "model.estimator.n_estimators=2", "model.estimator.max_depth=2")
    return store
