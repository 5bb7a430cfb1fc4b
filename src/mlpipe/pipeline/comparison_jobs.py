"""The jobs of a comparison: each model config trained and tested by the pipeline's own `train` and
`test_model` steps on data versions pinned for all of them, each job a pipeline run nested under
the comparison's run. The orchestrator runs them as it runs any pipeline, with the step cache: a
model trained before with the same code, config and data is reused, not trained again.

A job's config is composed as main.py composes one: config.yaml, the overrides the comparison was
started with, and `model=<name>`. Model families take different arguments, so an override of a
`model.` key applies to the models whose config has that key; the others skip it (the report
says which).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mlpipe.errors import StepError
from mlpipe.pipeline import config
from mlpipe.pipeline.components import discover
from mlpipe.pipeline.definition import kind_mismatch
from mlpipe.pipeline.orchestrator import Pipeline
from mlpipe.tracking import runs

log = logging.getLogger("compare")
PROD = "prod"  # the job that tests the current prod model (no training)
MODEL_STEPS = ("train", "test_model")
PROD_STEPS = ("test_model",)
# Set per job: which steps, which model, nothing of the sweeper.
PER_JOB_KEYS = ("main.steps", "main.force_steps", "model", "hparams_search")


@dataclass
class Job:
    name: str  # a model config (conf/model/<name>.yaml), or PROD
    overrides: list[str]  # what its config was composed with
    skipped: list[str] = field(default_factory=list)  # `model.` overrides its config has no key for
    cfg: DictConfig | None = None
    error: str = ""  # why its config could not be composed


@dataclass
class JobResult:
    job: Job
    pipeline_run_id: str | None = None
    step_runs: dict[str, Run] = field(default_factory=dict)  # step -> its run
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(overrides every job takes, (key, override) of `model.` keys); per-job keys dropped."""
    common: list[str] = []
    model_keys: list[tuple[str, str]] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if any(key == k or key.startswith(f"{k}/") for k in PER_JOB_KEYS):
            continue
        if key.startswith("model."):
            model_keys.append((key, override.input_line))
        else:
            common.append(override.input_line)
    return common, model_keys


def steps_override(steps: Sequence[str]) -> str:
    return f"main.steps='{','.join(steps)}'"  # quoted: unquoted commas would make it a sweep


def pins(steps: Sequence[str], versions: Mapping[str, str]) -> list[str]:
    """`++<step>.<parameter>=<reference>` for every read of an artifact in `versions` (name ->
    reference) by the given steps, as their contracts declare the reads."""
    found = set()
    for component in discover().values():
        contract = component.contract
        if contract.step in steps:
            for parameter, artifact in contract.reads().items():
                if artifact in versions:
                    found.add(f"++{contract.step}.{parameter}={versions[artifact]}")
    return sorted(found)


def compose(overrides: list[str], dataset: Mapping[str, Any], experiment: str) -> DictConfig:
    """The job's config; its dataset is the comparison's (as the step was given it) and its runs
    go to the comparison's experiment."""
    cfg = config.load(overrides)
    OmegaConf.update(cfg, "dataset", dict(dataset), merge=False)
    OmegaConf.update(cfg, "main.project_name", experiment)
    return cfg


def composition_error(name: str, error: Exception) -> str:
    return f"compare: the config of '{name}' does not compose: {str(error).strip().splitlines()[0]}"


def fitting_models(cfg: DictConfig) -> str:
    """The model configs that train on the dataset's kind, for the hint of one that does not."""
    kind = cfg.dataset.get("kind", "table")
    names = [
        m
        for m in config.groups().get("model", [])
        if config.load([f"model={m}"]).model.get("dataset_kind", "table") == kind
    ]
    return f"models for {kind} datasets: {', '.join(names)}"


def model_job(
    name: str,
    invocation: Sequence[str],
    versions: Mapping[str, str],
    dataset: Mapping[str, Any],
    experiment: str,
) -> Job:
    """Train and test model config `name` on the pinned versions."""
    common, model_keys = split_overrides(invocation)
    base = [*common, f"model={name}", steps_override(MODEL_STEPS), *pins(MODEL_STEPS, versions)]
    job = Job(name, base)
    try:
        cfg = compose(base, dataset, experiment)
    except Exception as e:  # Hydra's composition errors: this model's row says why
        job.error = composition_error(name, e)
        return job
    mismatch = kind_mismatch(cfg)
    if mismatch:  # a FAILED row; the other models still run
        job.error = f"compare: {mismatch}; take it out of compare.models ({fitting_models(cfg)})"
        return job
    applies = [
        line
        for key, line in model_keys
        if line.startswith("+") or not config.override_target_missing(cfg, key)
    ]
    job.skipped = [line for _, line in model_keys if line not in applies]
    if applies:
        job.overrides = [*base, *applies]
        try:
            cfg = compose(job.overrides, dataset, experiment)
        except Exception as e:
            job.error = composition_error(name, e)
            return job
    job.cfg = cfg
    return job


def prod_job(
    invocation: Sequence[str], versions: Mapping[str, str], dataset: Mapping[str, Any], experiment: str
) -> Job:
    """Test the model export aliased prod on the pinned test data (the pipeline's `model=` is
    composed but unused: test_model takes no model config)."""
    common, _ = split_overrides(invocation)
    pinned = {**versions, "model_export": f"model_export:{PROD}"}
    overrides = [*common, steps_override(PROD_STEPS), *pins(PROD_STEPS, pinned)]
    job = Job(PROD, overrides)
    try:
        job.cfg = compose(overrides, dataset, experiment)
    except Exception as e:
        job.error = composition_error(PROD, e)
    return job


def run(job: Job, comparison_run_id: str, workdir: Path) -> JobResult:
    """Run one job as a pipeline nested under the comparison's run; a failure is the result's
    error (the comparison goes on with the other models)."""
    if job.cfg is None:
        return JobResult(job, error=job.error)
    log.info("%s: %s", job.name, " ".join(job.overrides))
    pipeline = None
    try:
        pipeline = Pipeline(
            job.cfg,
            workdir / job.name,
            tags={runs.TAG_COMPARISON: comparison_run_id, runs.TAG_COMPARED_MODEL: job.name},
            overrides=job.overrides,
            parent_run_id=comparison_run_id,
            run_name=f"model {job.name}",
        )
        pipeline.run()
        error = ""
    except StepError as e:
        error = str(e)
        log.warning("%s failed: %s", job.name, error)
    result = JobResult(job, pipeline.parent_id if pipeline else None, error=error)
    if result.pipeline_run_id:
        client = MlflowClient()
        children = client.search_runs(
            [pipeline.experiment_id],  # type: ignore[union-attr]
            f"tags.`{runs.TAG_PARENT}` = '{result.pipeline_run_id}'",
        )
        result.step_runs = {r.data.tags[runs.TAG_STEP]: r for r in children if runs.TAG_STEP in r.data.tags}
    return result


def plan(
    models: Sequence[str],
    invocation: Sequence[str],
    versions: Mapping[str, str],
    dataset: Mapping[str, Any],
    experiment: str,
    include_prod: bool = False,
    prod_exists: bool = False,
) -> list[Job]:
    """One job per model config named (in order, once each), and the prod job when asked (a
    failed one when no export is aliased prod yet)."""
    known = config.groups().get("model", [])
    names = list(dict.fromkeys(models))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise StepError(
            f"compare: compare.models is {list(models)}; expected one or more of {', '.join(known)} "
            "(files in conf/model/)"
        )
    jobs = [model_job(name, invocation, versions, dataset, experiment) for name in names]
    if include_prod and prod_exists:
        jobs.append(prod_job(invocation, versions, dataset, experiment))
    elif include_prod:
        error = (
            "compare: compare.include_prod: no model_export version is aliased prod yet (promote one first)"
        )
        jobs.append(Job(PROD, [], error=error))
    return jobs
