"""Run bookkeeping: the tags this project writes, the pipeline's parent run, its step runs, and
the record of a step reused from the cache."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from mlpipe import project
from mlpipe.processes import started, still_running
from mlpipe.tracking.secrets import loggable, scrub

# Tags this project writes on runs; one place, so queries and writers agree.
TAG_STEP = "mlpipe.step"
TAG_COMPONENT = "mlpipe.component"
TAG_PIPELINE = "mlpipe.pipeline"
TAG_ERROR = "mlpipe.error"
TAG_PARENT = "mlflow.parentRunId"
TAG_COMMIT = "mlflow.source.git.commit"
TAG_LAUNCHER = "mlpipe.launcher_run_id"
TAG_PIPELINE_RUN = "mlpipe.pipeline_run_id"  # on the launcher run: the pipeline it started
TAG_SWEEP_ID = "mlpipe.sweep.id"  # on each pipeline run of a sweep: the sweep (its folder)
TAG_SWEEP_JOB = "mlpipe.sweep.job"
TAG_SWEEP_OVERRIDES = "mlpipe.sweep.overrides"
TAG_SWEEP_SUMMARY = "mlpipe.sweep.summary"
TAG_COMPARISON = "mlpipe.comparison"  # on each model's pipeline run of a comparison: the comparison run
TAG_COMPARED_MODEL = "mlpipe.comparison.model"
# The process that runs a run, so that a later pipeline can tell a run whose process is gone
# (killed, or stopped by a store that stopped answering) from one still running.
TAG_HOST, TAG_PID, TAG_STARTED = "mlpipe.host", "mlpipe.pid", "mlpipe.process_started"
BOOKKEEPING_TAGS = ("mlflow.", "mlpipe.")  # MLflow's and the pipeline's; a step's own tags are the rest


def log_params(config: Mapping[str, Any], run_id: str | None = None) -> None:
    """Log a nested config as flat parameters (MLflow caps a value at 6000 characters)."""
    params = {k: str(v)[:6000] for k, v in loggable(config).items()}  # loggable scrubbed them
    client = MlflowClient()
    run_id = run_id or mlflow.active_run().info.run_id  # type: ignore[union-attr]
    items = list(params.items())
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[start : start + 100]])


def finish_run(run_id: str, failed: bool, killed: bool = False) -> None:
    status = RunStatus.KILLED if killed else RunStatus.FAILED if failed else RunStatus.FINISHED
    MlflowClient().set_terminated(run_id, RunStatus.to_string(status))


def git_state(folder: Path) -> dict[str, str]:
    """The commit of the project being run, and whether its tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {
            TAG_COMMIT: git("rev-parse", "HEAD"),
            "mlpipe.git_dirty": str(bool(git("status", "--porcelain"))).lower(),
        }
    except (OSError, subprocess.SubprocessError):
        return {"mlpipe.git_dirty": "unknown (no git commit)"}


@cache
def installed_packages() -> str:
    """Every distribution in this environment as name==version, one per line (the parent run's
    record; the cache key uses only the pinned ones, see cache.package_versions). Read once per
    process: the jobs of a sweep share it."""
    names = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def process_tags(pid: int | None = None) -> dict[str, str]:
    """Which process runs a run (this one by default): host, pid and when it started."""
    pid = pid or os.getpid()
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_STARTED: started(pid) or ""}


def process_gone(tags: Mapping[str, str]) -> bool:
    """Whether a run's process (its process tags) ran on this host and is gone; a run of another
    host, or without the tags, is not for this host to judge."""
    if tags.get(TAG_HOST) != socket.gethostname() or not tags.get(TAG_PID, "").isdigit():
        return False
    return not still_running(int(tags[TAG_PID]), tags.get(TAG_STARTED) or None)


def fail_stale_runs(client: MlflowClient, experiment_ids: list[str], by: str) -> list[Run]:
    """End FAILED, with the reason, the RUNNING runs whose process on this host is gone (killed
    with SIGKILL, or given up on a store that stopped answering): nothing else would end them.
    Return them."""
    stale = [
        run
        for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000)
        if process_gone(run.data.tags)
    ]
    for run in stale:
        tags = run.data.tags
        reason = (
            f"its process (pid {tags[TAG_PID]} on {tags[TAG_HOST]}) ended without ending the run "
            f"(killed, or the tracking store stopped answering); marked FAILED by {by}"
        )
        note_error(client, run, reason)
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    return stale


def start_pipeline_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    tags: Mapping[str, str],
    config: Mapping[str, Any],
    config_yaml: str,
) -> str:
    """The parent run of one pipeline invocation, with its resolved config as parameters and as a
    file, and the installed packages."""
    run_tags = {TAG_PIPELINE: "true", **process_tags(), **tags}
    run_id = client.create_run(experiment_id, run_name=name, tags=run_tags).info.run_id
    log_params(config, run_id)
    client.log_text(run_id, scrub(config_yaml), "config.yaml")
    client.log_text(run_id, installed_packages(), "environment/packages.txt")
    return run_id


def link_launcher(client: MlflowClient, launcher_id: str, pipeline_id: str, job: str | None) -> None:
    """Tell the `mlflow run` launcher run which pipeline run it started (one tag per sweep job,
    so jobs do not overwrite each other)."""
    client.set_tag(launcher_id, f"{TAG_PIPELINE_RUN}{f'.{job}' if job else ''}", pipeline_id)
    launcher = project.launcher_pid()  # `mlflow run`, which ends that run once main.py exits
    if launcher is not None:
        client.log_batch(launcher_id, tags=[RunTag(k, v) for k, v in process_tags(launcher).items()])


def kill_launcher(client: MlflowClient, launcher_id: str, reason: str) -> None:
    """End the `mlflow run` launcher run KILLED (main.py was interrupted)."""
    client.set_tag(launcher_id, TAG_ERROR, reason)
    client.set_terminated(launcher_id, RunStatus.to_string(RunStatus.KILLED))


def end_pipeline_run(
    client: MlflowClient, run_id: str, children: Mapping[str, str], error: str | None, killed: bool = False
) -> None:
    """FINISHED, FAILED with the error, or KILLED (stopped by a signal)."""
    if error:
        client.set_tag(run_id, TAG_ERROR, error[:5000])
    client.log_text(run_id, json.dumps(dict(children), indent=2), "step_runs.json")
    finish_run(run_id, failed=error is not None, killed=killed)


def start_step_run(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    step: str,
    component: str,
    tags: Mapping[str, str],
) -> str:
    """The child run a step's component resumes."""
    run_tags = {TAG_PARENT: parent_id, TAG_STEP: step, TAG_COMPONENT: component, **process_tags(), **tags}
    return client.create_run(experiment_id, run_name=step, tags=run_tags).info.run_id


def note_error(client: MlflowClient, run: Run, reason: str) -> None:
    """The reason a run failed, unless its code recorded one already."""
    if TAG_ERROR not in run.data.tags:
        client.set_tag(run.info.run_id, TAG_ERROR, scrub(reason)[:5000])


def end_step_run(client: MlflowClient, run_id: str, reason: str, killed: bool = False) -> None:
    """A step that did not succeed: the reason on its run (unless its code put one there) and
    its run ended FAILED (a run its process could not end, after a hard crash) or KILLED."""
    run = client.get_run(run_id)
    note_error(client, run, reason)
    if killed or not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
        status = RunStatus.KILLED if killed else RunStatus.FAILED
        client.set_terminated(run_id, RunStatus.to_string(status))


def record_reuse(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    step: str,
    component: str,
    original: Run,
    tags: Mapping[str, str],
) -> str:
    """A finished child run standing for a reused step: it carries `tags` (the original's
    outputs, the cache key), the tags the step set itself (what test_model tested, ...), the
    original's metrics and parameters, and the datasets and logged models it read and made."""
    own = {k: v for k, v in original.data.tags.items() if not k.startswith(BOOKKEEPING_TAGS)}
    run_tags = {**own, TAG_PARENT: parent_id, TAG_STEP: step, TAG_COMPONENT: component, **tags}
    run_id = client.create_run(experiment_id, run_name=f"{step} (reused)", tags=run_tags).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in original.data.metrics.items()],
        params=[Param(k, v) for k, v in original.data.params.items()],
    )
    full = client.get_run(original.info.run_id)  # a search result leaves the model inputs out
    if full.inputs and (full.inputs.dataset_inputs or full.inputs.model_inputs):
        client.log_inputs(run_id, datasets=full.inputs.dataset_inputs, models=full.inputs.model_inputs)
    if full.outputs and full.outputs.model_outputs:
        client.log_outputs(run_id, full.outputs.model_outputs)
    finish_run(run_id, failed=False)
    return run_id
