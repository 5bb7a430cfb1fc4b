"""A tracking store that stops answering mid-run: `make server`'s PostgreSQL killed while `train`
runs. The step and the pipeline give up after about `tracking.store_timeout_s` with one line
naming the store (they retried for good before), and the next pipeline, once the store is back,
ends as FAILED the runs whose processes are gone; so it does after a SIGKILL of the whole run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking import server
from mlpipe.tracking.runs import TAG_ERROR, TAG_PID, TAG_PIPELINE, TAG_STEP
from tests.conftest import PROJECT_ROOT, run_main, subprocess_env
from tests.fault_project import fault_project, session_processes
from tests.test_serving import free_port

pytestmark = pytest.mark.slow
TIMEOUT_S = 10  # tracking.store_timeout_s for the test (60 by default)
FAST_MODEL = ["model.estimator.n_jobs=1", "model.estimator.n_estimators=30"]


@pytest.fixture
def team_server() -> Iterator[server.Server]:
    """`make server` of its own (its PostgreSQL gets killed), in a folder PostgreSQL can enter."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-server-"))
    folder.chmod(0o755)
    started = server.start(folder, port=free_port())
    try:
        yield started
    finally:
        server.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def start_main(args: list[str], uri: str, log: Path, cwd: Path = PROJECT_ROOT) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "main.py", f"hydra.run.dir={log.parent / 'outputs'}", *args],
            cwd=cwd,
            env=subprocess_env(MLFLOW_TRACKING_URI=uri),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(text: str, log: Path, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def pipeline_runs(client: MlflowClient, experiment: str) -> dict[str, object]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return {r.info.run_id: r for r in client.search_runs([found.experiment_id], max_results=100)}


def test_a_store_that_dies_mid_run_ends_the_pipeline_in_one_line(
    team_server: server.Server, tmp_path: Path
) -> None:
    uri, project = team_server.tracking_uri, "outage"
    log = tmp_path / "log.txt"
    process = start_main(
        [
            "main.steps='download,basic_cleaning,data_check,data_split,train'",
            f"main.project_name={project}",
            f"tracking.store_timeout_s={TIMEOUT_S}",
            *FAST_MODEL,
        ],
        uri,
        log,
    )
    try:
        wait_for("train | fitting", log, process)
        os.kill(team_server.postgres_pid, signal.SIGKILL)  # the database under the server dies
        # Before, every store call of the step retried for minutes, and the pipeline hung.
        code = process.wait(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: main: step 'train' failed: train: the tracking store at {uri} stopped answering and did "
        f"not come back within {TIMEOUT_S} s (tracking.store_timeout_s): gave up; the runs it could not "
        "end are marked FAILED by the next pipeline once the store answers"
    ], output[-3000:]
    # The step said what it met, in its own line.
    assert f"train | train: the tracking store at {uri} stopped answering (HTTP " in output, output[-3000:]
    for _ in range(100):  # the warm parent and multiprocessing's resource tracker, a moment later
        if not session_processes(process.pid):
            break
        time.sleep(0.1)
    assert not session_processes(process.pid)

    # The store is back (PostgreSQL on the port it had); the train and pipeline runs were left
    # RUNNING, and the next pipeline ends them FAILED, saying so.
    back = server.start(Path(team_server.folder), port=team_server.port)
    assert back.postgres_port == team_server.postgres_port
    client = MlflowClient(uri)
    left = [r for r in pipeline_runs(client, project).values() if r.info.status == "RUNNING"]
    assert sorted(r.data.tags.get(TAG_STEP, "pipeline") for r in left) == ["pipeline", "train"]
    assert all(r.data.tags[TAG_PID].isdigit() for r in left)
    again = run_main(["main.steps=download", f"main.project_name={project}"], uri, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "marked FAILED 2 run(s) left RUNNING by a process that is gone" in again.stderr
    for run in left:
        ended = client.get_run(run.info.run_id)
        assert ended.info.status == "FAILED"
        assert "ended without ending the run" in ended.data.tags[TAG_ERROR]


def test_runs_left_running_by_a_sigkill_of_the_whole_run_are_failed_by_the_next_pipeline(
    tmp_path: Path,
) -> None:
    """`kill -9` of the run's process group: nothing of it can end its runs. The next pipeline
    sees that their processes (pid, host and start time recorded on each) are gone."""
    root = fault_project(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "log.txt"
    process = start_main(["main.steps=fault", "dataset=penguins", "+fault.how=hang"], uri, log, cwd=root)
    try:
        wait_for("hanging", log, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    client = MlflowClient(uri)
    runs = pipeline_runs(client, "penguins")
    assert {r.info.status for r in runs.values()} == {"RUNNING"} and len(runs) == 2
    again = run_main(["main.steps=download", "dataset=penguins"], uri, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "marked FAILED 2 run(s) left RUNNING by a process that is gone" in again.stderr
    for run_id in runs:
        ended = client.get_run(run_id)
        assert ended.info.status == "FAILED", ended.data.tags
        assert ended.data.tags[TAG_ERROR].startswith(f"its process (pid {ended.data.tags[TAG_PID]} on ")
    # The new pipeline's own runs, alive when it looked, were not touched.
    fresh = [r for r in pipeline_runs(client, "penguins").values() if r.info.run_id not in runs]
    assert fresh and {r.info.status for r in fresh} == {"FINISHED"}
    assert any(TAG_PIPELINE in r.data.tags for r in fresh)
