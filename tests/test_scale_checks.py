"""What a sweep on Ray hands its jobs, and the one-line errors before anything starts when the
tracking server, its PostgreSQL or a Ray address does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline import ray_jobs
from mlpipe.tracking import server, store
from tests.conftest import PROJECT_ROOT, subprocess_env


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jobs_get_the_store_project_and_settings_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    monkeypatch.setenv("MLFLOW_RUN_ID", "launcher-run")  # the driver's own run, not the jobs'
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("MLPIPE_WANDB_MODE", "offline")
    monkeypatch.setenv("UNRELATED", "x")
    options = ray_jobs.init_options(OmegaConf.create({"address": None}))
    env = options["runtime_env"]["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"
    assert env[project.ENV_ROOT] == str(PROJECT_ROOT) and Path(env[project.ENV_RESULTS]).is_absolute()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PROJECT_ROOT / "src")
    assert (env["WANDB_ENTITY"], env["MLPIPE_WANDB_MODE"]) == ("team", "offline")
    assert "MLFLOW_RUN_ID" not in env and "UNRELATED" not in env
    # Unset address: a local Ray of our own, with the launcher's small object store.
    assert (
        options["address"] == "local" and options["object_store_memory"] == ray_jobs.LOCAL_OBJECT_STORE_BYTES
    )


def test_joining_a_cluster_keeps_its_object_store_and_the_users_env_vars_win() -> None:
    init = {"address": "auto", "object_store_memory": None, "runtime_env": {"env_vars": {"WANDB_MODE": "x"}}}
    options = ray_jobs.init_options(init)
    assert "object_store_memory" not in options
    assert options["runtime_env"]["env_vars"]["WANDB_MODE"] == "x"
    assert options["runtime_env"]["env_vars"][project.ENV_ROOT] == str(PROJECT_ROOT)


def test_a_ray_address_that_does_not_answer_is_one_line() -> None:
    address = f"127.0.0.1:{closed_port()}"
    with pytest.raises(StepError, match=rf"no Ray cluster answers at {address} \(hydra.launcher.ray.init"):
        ray_jobs.check_answers(address, timeout_s=1)


def test_a_store_that_does_not_answer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(StepError, match=rf"tracking server at http://127.0.0.1:{port} .* does not answer"):
        store.check_answers()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://user:secret@127.0.0.1:{port}/mlflow")
    with pytest.raises(StepError, match=rf"PostgreSQL at 127.0.0.1:{port}/mlflow .* does not answer") as e:
        store.check_answers()
    assert "secret" not in str(e.value)
    assert store.unreachable("sqlite:///anything.db") is None


def test_make_server_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StepError, match=f"port {port} on 127.0.0.1 is in use"):
            server.start(tmp_path / "server", port=port)
    assert not (tmp_path / "server").exists()  # nothing was started


def main_py(args: list[str], tracking_uri: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "main.py"), f"hydra.sweep.dir={tmp_path}/sweep", *args],
        cwd=PROJECT_ROOT,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_pipeline_against_a_server_that_is_not_there_stops_with_one_line(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    done = main_py(["main.steps=download"], uri, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: main: the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer: "
        "[Errno 111] Connection refused; start it with `make server` or point MLFLOW_TRACKING_URI at a "
        "running one"
    ]


@pytest.mark.slow
def test_sweep_on_a_ray_address_that_does_not_answer_stops_before_any_job(
    tmp_path: Path, fresh_tracking_uri: str
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    done = main_py(
        [
            "main.steps=download",
            "data_split.random_seed=1,2",
            "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address={address}",
            "-m",
        ],
        fresh_tracking_uri,
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        done.stderr.strip().splitlines()[-1].startswith(f"error: main: no Ray cluster answers at {address}")
    )
    assert not list((tmp_path / "sweep").glob("*/sweep_job.json"))  # no job started
