"""The pipeline's scheduler and cache on real runs (in-process executor, penguins: fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.pipeline import cache
from mlpipe.tracking.runs import TAG_ERROR, TAG_PARENT, TAG_STEP
from tests.conftest import reused_steps as reused
from tests.conftest import run_pipeline as run


@pytest.fixture
def project(project_name: str) -> str:
    return project_name


def test_cache_reuses_what_did_not_change_and_reruns_what_did(project: str, tmp_path: Path):
    first = run(project, tmp_path)
    assert reused(first) == set()
    again = run(project, tmp_path)
    assert reused(again) == set(first)  # nothing changed: everything reused
    client = MlflowClient()
    original_train = client.get_run(first["train"])
    reuse_record = client.get_run(again["train"])
    assert reuse_record.data.tags[cache.TAG_REUSED] == first["train"]
    assert reuse_record.data.metrics["val_accuracy"] == original_train.data.metrics["val_accuracy"]
    assert reuse_record.data.tags[TAG_PARENT] != original_train.data.tags[TAG_PARENT]
    tested, tested_again = (client.get_run(c["test_model"]).data.tags for c in (first, again))
    assert tested_again["model_artifact"] == tested["model_artifact"]  # the step's own tags come along

    # a parameter of the split: the split and everything downstream of it rerun
    changed = run(project, tmp_path, "data_split.test_size=0.3")
    assert reused(changed) == {"download", "basic_cleaning", "data_check"}
    # a model parameter: only training and testing
    changed = run(project, tmp_path, "model.estimator.max_depth=3")
    assert reused(changed) == {"download", "basic_cleaning", "data_check", "data_split"}
    # forced, and the cache switched off
    forced = run(project, tmp_path, "main.force_steps=[basic_cleaning]")
    assert "basic_cleaning" not in reused(forced) and "download" in reused(forced)
    # identical output: the steps after the forced one hit the cache again
    assert {"data_check", "data_split", "train", "test_model"} <= reused(forced)
    assert reused(run(project, tmp_path, "main.cache=false")) == set()


def test_independent_steps_run_at_the_same_time(project: str, tmp_path: Path):
    children = run(project, tmp_path)
    client = MlflowClient()
    check, split = (client.get_run(children[s]).info for s in ("data_check", "data_split"))
    assert check.start_time < split.end_time and split.start_time < check.end_time
    train = client.get_run(children["train"]).info
    assert train.start_time >= max(check.end_time, split.end_time)


def test_a_failure_stops_the_steps_that_depend_on_it(project: str, tmp_path: Path):
    with pytest.raises(
        StepError, match=r"main: step 'data_check' failed: data_check: 1 data test\(s\) failed"
    ):
        run(project, tmp_path, "dataset.checks.rows=[100000,200000]")
    client = MlflowClient()
    experiment = client.get_experiment_by_name(project).experiment_id
    [parent] = client.search_runs([experiment], "tags.`mlpipe.pipeline` = 'true'")
    assert parent.info.status == "FAILED" and "test_row_count" in parent.data.tags[TAG_ERROR]
    steps = {
        r.data.tags[TAG_STEP]: r.info.status
        for r in client.search_runs([experiment], f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'")
    }
    # the split ran beside the check and finished; training and testing never started
    assert steps == {
        "download": "FINISHED",
        "basic_cleaning": "FINISHED",
        "data_check": "FAILED",
        "data_split": "FINISHED",
    }


def test_unknown_forced_step_and_executor(project: str, tmp_path: Path):
    with pytest.raises(StepError, match=r"main\.force_steps names"):
        run(project, tmp_path, "main.steps=download", "main.force_steps=[train]")
    with pytest.raises(StepError, match=r"executor 'threads' in main\.executor"):
        run(project, tmp_path, "main.executor=threads")
    with pytest.raises(StepError, match=r"needs main\.env_manager=local, not 'conda'"):
        run(project, tmp_path, "main.env_manager=conda")
