"""Ctrl-C and SIGTERM, to the top process alone or to its whole process group, on real `mlflow run`
and `python main.py` process trees: every step process stops, nothing is published after the
signal, every run of the pipeline ends KILLED, the log says "interrupted", main.py exits 130
(SIGINT) or 143 (SIGTERM), and no process of the tree is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.runs import TAG_ERROR
from tests.conftest import subprocess_env
from tests.fault_project import fault_project, session_processes

pytestmark = pytest.mark.slow
OPTIONS = "dataset=penguins +fault.how={how}"  # the step logs "hanging", then publishes a minute later


@dataclass(frozen=True)
class Case:
    command: str  # "mlflow run" or "python main.py"
    signum: int
    whole_group: bool  # False: to the top process alone
    how: str = "hang"  # deaf: the step ignores SIGINT and SIGTERM, so only SIGKILL stops it


CASES = [
    Case("mlflow run", signal.SIGINT, whole_group=False),
    Case("mlflow run", signal.SIGTERM, whole_group=False),
    Case("mlflow run", signal.SIGINT, whole_group=True),
    Case("mlflow run", signal.SIGTERM, whole_group=True),
    Case("python main.py", signal.SIGINT, whole_group=True),
    Case("python main.py", signal.SIGTERM, whole_group=False),
    # The warm parent dies of the group's SIGTERM before its worker: the pipeline must still
    # kill the worker it can no longer hear about (it was left running with parent 1).
    Case("mlflow run", signal.SIGTERM, whole_group=True, how="deaf"),
    Case("python main.py", signal.SIGINT, whole_group=True, how="deaf"),
]


@dataclass
class Outcome:
    case: Case
    code: int
    log: str
    store_uri: str
    left: list[int]


def interrupt(case: Case, root: Path, scratch: Path) -> Outcome:
    scratch.mkdir()
    uri = f"sqlite:///{scratch / 'mlflow.db'}"
    if case.command == "mlflow run":
        command = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "--env-manager", "local"]
        command += ["-P", "steps=fault", "-P", f"hydra_options={OPTIONS.format(how=case.how)}"]
    else:
        command = [sys.executable, "main.py", "main.steps=fault", *OPTIONS.format(how=case.how).split()]
    log = scratch / "log.txt"
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=subprocess_env(MLFLOW_TRACKING_URI=uri, MLPIPE_OUTPUT_ROOT=str(scratch)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to signal it as a terminal would
        )
        try:
            deadline = time.monotonic() + 240
            while "hanging" not in log.read_text():
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            if case.whole_group:
                os.killpg(process.pid, case.signum)
            else:
                process.send_signal(case.signum)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    left = session_processes(process.pid)
    for _ in range(100):  # processes a few moments from their end
        if not left:
            break
        time.sleep(0.1)
        left = session_processes(process.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return Outcome(case, code, log.read_text(), uri, left)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    """Every case, all at once (each its own store and process tree): minutes one after another."""
    base = tmp_path_factory.mktemp("interrupts")
    root = fault_project(base / "project")
    with ThreadPoolExecutor(len(CASES)) as pool:
        return list(pool.map(lambda i: interrupt(CASES[i], root, base / f"case{i}"), range(len(CASES))))


@pytest.mark.parametrize(
    "index",
    range(len(CASES)),
    ids=[f"{c.command}-{c.signum.name}-{'group' if c.whole_group else 'top'}-{c.how}" for c in CASES],
)
def test_an_interrupt_stops_every_step_and_ends_every_run_killed(outcomes: list[Outcome], index: int):
    outcome = outcomes[index]
    case = outcome.case
    assert not outcome.left, f"processes left running: {outcome.left}\n{outcome.log[-3000:]}"
    assert "interrupted" in outcome.log, outcome.log[-3000:]
    if case.command == "python main.py":
        assert outcome.code == 128 + case.signum, outcome.log[-3000:]
    else:
        assert outcome.code != 0, outcome.log[-3000:]
    client = MlflowClient(outcome.store_uri)
    experiment = client.get_experiment_by_name("penguins").experiment_id
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([experiment])}
    assert statuses == {"penguins · random_forest": "KILLED", "fault": "KILLED"}, outcome.log[-3000:]
    if case.command == "mlflow run":
        [launcher] = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
        # Sent to `mlflow run` alone, main.py gets SIGTERM: from `mlflow run`, or the kernel as it dies.
        received = case.signum if case.whole_group else signal.SIGTERM
        assert launcher.data.tags[TAG_ERROR] == f"interrupted by {received.name}"
        # main.py ends it KILLED; an `mlflow run` that caught SIGINT itself then marks it FAILED as
        # it exits (MLflow 3.17.2 compares the status text with numbers, so it always overwrites).
        assert launcher.info.status == ("FAILED" if case.signum == signal.SIGINT else "KILLED")
    assert ArtifactStore(experiment, client).find("fault_output:latest") is None  # nothing published
    if case.how == "deaf":
        assert "did not stop within 5 s: killed" in outcome.log, outcome.log[-3000:]
