"""The default executor: each step in a worker process forked from a warm parent. A step that dies
hard (os._exit, SIGKILL, a segfault, the out-of-memory killer) fails alone with one line naming
it and the signal; the steps that do not depend on it finish; its run is FAILED and never reused."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mlpipe import project
from mlpipe.pipeline import cache, process_exit
from mlpipe.pipeline.config import load
from mlpipe.pipeline.orchestrator import Pipeline, StepFailed
from mlpipe.tracking.runs import TAG_ERROR, TAG_PARENT, TAG_STEP
from tests.fault_project import fault_project

STEPS = "main.steps='download,basic_cleaning,fault'"  # fault reads nothing: it runs beside download


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fault_project(tmp_path_factory.mktemp("faults") / "project")


@pytest.fixture
def experiment(root: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(project.ENV_ROOT, str(root))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    return f"workers-{uuid.uuid4().hex[:8]}"


def run_pipeline(experiment: str, tmp_path: Path, *overrides: str) -> dict[str, str]:
    cfg = load(["dataset=penguins", f"main.project_name={experiment}", *overrides])
    return Pipeline(cfg, tmp_path / uuid.uuid4().hex[:6]).run()


def step_runs(experiment: str) -> tuple[Run, dict[str, Run]]:
    """The latest pipeline run and its step runs by step."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parent = client.search_runs(
        [experiment_id], "tags.`mlpipe.pipeline` = 'true'", order_by=["attributes.start_time DESC"]
    )[0]
    children = client.search_runs([experiment_id], f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'")
    return parent, {r.data.tags[TAG_STEP]: r for r in children}


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("exit", "its process exited with code 3 without reporting an error"),
        ("sigkill", "its process was killed by SIGKILL"),
        ("segfault", r"its process was killed by SIGSEGV \(a segmentation fault\)"),
    ],
)
def test_a_step_that_dies_hard_fails_alone(how: str, reason: str, experiment: str, tmp_path: Path):
    for attempt in range(2):  # the second time, the failed run is not reused: the step runs again
        with pytest.raises(StepFailed, match=f"^main: step 'fault' failed: {reason}"):
            run_pipeline(experiment, tmp_path, STEPS, f"+fault.how={how}")
        parent, steps = step_runs(experiment)
        assert parent.info.status == "FAILED"
        assert {s: r.info.status for s, r in steps.items()} == {
            "download": "FINISHED",
            "basic_cleaning": "FINISHED",
            "fault": "FAILED",
        }
        fault = steps["fault"]
        assert fault.data.tags[TAG_ERROR].startswith(reason.replace("\\", "")[:30])
        assert "(reused)" not in fault.info.run_name
        if attempt == 0:
            key = fault.data.tags[cache.TAG_KEY]
    experiment_id = MlflowClient().get_experiment_by_name(experiment).experiment_id
    assert cache.find_reusable(MlflowClient(), experiment_id, key) is None


def test_a_killed_step_is_named_with_its_signal_under_mlflow_run_too(experiment: str, tmp_path: Path):
    with pytest.raises(StepFailed, match=r"^main: step 'fault' failed: its process was killed by SIGKILL"):
        run_pipeline(
            experiment, tmp_path, "main.steps=fault", "+fault.how=sigkill", "main.executor=mlflow_run"
        )
    _, steps = step_runs(experiment)
    assert steps["fault"].info.status == "FAILED"


def memory_cgroup(limit_mb: int) -> Path | None:
    """A new memory cgroup (v1 or v2) capped at `limit_mb`, or None where this process may not make one."""
    versions = (("/sys/fs/cgroup/memory", "memory.limit_in_bytes"), ("/sys/fs/cgroup", "memory.max"))
    for base, limit_file in versions:
        folder = Path(base) / f"mlpipe-test-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()
        except OSError:
            continue
        try:
            (folder / limit_file).write_text(str(limit_mb << 20))
            return folder
        except OSError:
            folder.rmdir()
    return None


def test_a_step_the_out_of_memory_killer_ends_is_named_so(experiment: str, tmp_path: Path):
    cgroup = memory_cgroup(300)
    if cgroup is None:
        pytest.skip("no memory cgroup can be made here (needs root and a writable /sys/fs/cgroup)")
    try:
        with pytest.raises(StepFailed, match="killed by SIGKILL: the kernel's out-of-memory killer"):
            run_pipeline(experiment, tmp_path, "main.steps=fault", f"+fault.how=oom:{cgroup}")
    finally:
        cgroup.rmdir()
    _, steps = step_runs(experiment)
    assert steps["fault"].info.status == "FAILED"


def test_describe_exit_names_the_signal():
    assert process_exit.describe_exit(-9).startswith("its process was killed by SIGKILL")
    assert process_exit.describe_exit(-6) == "its process was killed by SIGABRT (an abort)"
    assert process_exit.describe_exit(2) == "its process exited with code 2 without reporting an error"
