"""Running the pipeline: one parent run, one child run per step, each step started as soon as
the steps it depends on are done, reused from the cache when nothing it depends on changed."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, ListConfig, OmegaConf

from mlpipe import cache, tracking, wandb_mirror
from mlpipe.artifacts import OUT, ArtifactStore, parse_reference
from mlpipe.errors import StepError
from mlpipe.executors import ComponentFailed, make_executor
from mlpipe.paths import PROJECT_ROOT
from mlpipe.planner import StepSpec, dependencies, plan, select
from mlpipe.progress import Progress
from mlpipe.sweep import TAG_SWEEP_JOB
from mlpipe.wiring import pipeline_steps

log = logging.getLogger("main")
ARTIFACT_TAG = "artifact."
LAUNCHER_VAR = "MLPIPE_LAUNCHER_RUN_ID"


class StepFailed(StepError):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"main: step '{step}' failed: {reason}")
        self.step = step


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "mlflow.source.git.commit": git("rev-parse", "HEAD"),
            "mlpipe.git_dirty": str(bool(git("status", "--porcelain"))).lower(),
        }
    except (OSError, subprocess.SubprocessError):
        return {"mlpipe.git_dirty": "unknown (no git commit)"}


def installed_packages() -> str:
    """Every distribution in this environment as name==version, one per line (the parent run's
    record; the cache key uses only the pinned ones, see cache.package_versions)."""
    names = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def names_list(value: Any) -> set[str]:
    """`a,b`, `[a, b]` or nothing, as a set of names."""
    if value is None:
        return set()
    items = list(value) if isinstance(value, ListConfig | list | tuple) else str(value).split(",")
    return {str(i).strip() for i in items if str(i).strip()}


class Pipeline:
    def __init__(self, cfg: DictConfig, output_dir: Path, tags: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.extra_tags = tags or {}  # e.g. the sweep id and job number of a multirun job
        self.parent_id: str | None = None
        self.client = MlflowClient()
        self.experiment_id = tracking.ensure_experiment(str(cfg.main.project_name))
        self.store = ArtifactStore(self.experiment_id, self.client)
        self.executor = make_executor(str(cfg.main.get("executor", "mlflow_run")), str(cfg.main.env_manager))
        self.use_cache = bool(cfg.main.get("cache", True))
        self.force = names_list(cfg.main.get("force_steps"))
        self.produced: dict[str, str] = {}  # artifact name -> digest written in this run
        self._lock = threading.Lock()

    def write_step_configs(self) -> tuple[Path, Path]:
        resolved = OmegaConf.to_container(self.cfg, resolve=True)
        assert isinstance(resolved, dict)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        dataset_file = self.output_dir / "dataset.yaml"
        model_file = self.output_dir / "model.yaml"
        dataset_file.write_text(yaml.safe_dump(resolved["dataset"], sort_keys=False))
        model_file.write_text(yaml.safe_dump(resolved["model"], sort_keys=False))
        return dataset_file, model_file

    def existing_inputs(self, steps: list[StepSpec]) -> set[str]:
        written = {name for s in steps for name in s.writes.values()}
        return {
            parse_reference(ref)[0]
            for s in steps
            for ref in s.reads.values()
            if parse_reference(ref)[0] not in written and self.store.find(ref) is not None
        }

    def pin_inputs(self, step: StepSpec) -> tuple[dict[str, Any], dict[str, str]]:
        """The step's parameters with every read pinned to an exact version (the one this
        pipeline produced for `name:latest`, so parallel pipelines never read each other's
        outputs), and the digests of those versions."""
        params = step.parameters()
        digests: dict[str, str] = {}
        for key, ref in step.reads.items():
            name, selector = parse_reference(ref)
            with self._lock:
                produced = self.produced.get(name) if selector == "latest" else None
            if produced is not None:
                version = next(v for v in self.store.versions(name) if v.digest == produced)
            else:
                version = self.store.resolve(ref)
            params[key] = version.ref
            digests[name] = version.digest
        return params, digests

    def record_reuse(self, step: StepSpec, original: Run, parent_id: str, key: str) -> str:
        """A child run that says which run was reused and carries its outputs and metrics."""
        tags = {k: v for k, v in original.data.tags.items() if k.startswith(ARTIFACT_TAG)}
        tags |= {
            tracking.TAG_PARENT: parent_id,
            tracking.TAG_STEP: step.name,
            "mlpipe.component": step.component,
            cache.TAG_REUSED: original.info.run_id,
            cache.TAG_KEY: key,
        }
        run = self.client.create_run(self.experiment_id, run_name=f"{step.name} (reused)", tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in original.data.metrics.items()],
            params=[Param(k, v) for k, v in original.data.params.items()],
        )
        tracking.finish_run(run_id, failed=False)
        return run_id

    def execute(self, step: StepSpec, parent_id: str, progress: Progress) -> str:
        """Run (or reuse) one step; return its child run id."""
        try:
            params, digests = self.pin_inputs(step)
        except StepError as e:
            raise StepFailed(step.name, str(e)) from e
        key = cache.step_key(step.name, step.component, params, digests)
        if self.use_cache and step.name not in self.force and cache.cacheable(params):
            original = cache.find_reusable(self.client, self.experiment_id, key)
            if original is not None:
                run_id = self.record_reuse(step, original, parent_id, key)
                progress.update(
                    step.name, "reused", f"run {original.info.run_id} (same code, parameters, inputs)"
                )
                self.collect_outputs(step, original)  # the reuse record carries the same outputs
                return run_id
        child = self.client.create_run(
            self.experiment_id,
            run_name=step.name,
            tags={
                tracking.TAG_PARENT: parent_id,
                tracking.TAG_STEP: step.name,
                "mlpipe.component": step.component,
                cache.TAG_KEY: key,
            },
        )
        run_id = child.info.run_id
        progress.update(step.name, "running", f"run {run_id}")
        try:
            self.executor.run(step.component, params, run_id, self.experiment_id)
        except ComponentFailed as e:
            reason = (
                self.client.get_run(run_id).data.tags.get(tracking.TAG_ERROR) or f"{e} (see its output above)"
            )
            progress.update(step.name, "failed", reason)
            raise StepFailed(step.name, reason) from e
        progress.update(step.name, "done", f"run {run_id}")
        self.collect_outputs(step, self.client.get_run(run_id))
        return run_id

    def collect_outputs(self, step: StepSpec, run: Run) -> None:
        with self._lock:
            for name in step.writes.values():
                self.produced[name] = run.data.tags[f"{OUT}{name}"]

    def schedule(
        self, steps: list[StepSpec], depends: dict[str, set[str]], parent_id: str, done: dict[str, str]
    ) -> None:
        """Start each step once the steps it depends on are done; a failure stops the steps that
        depend on it (running ones finish). Fill `done` (step -> run id); raise the first failure."""
        progress = Progress([s.name for s in steps], log)
        pending = {s.name: s for s in steps}
        running: dict[Future[str], str] = {}
        failures: list[StepFailed] = []
        blocked: set[str] = set()
        workers = max(1, int(self.cfg.main.get("max_parallel", 4)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
            while pending or running:
                for name, step in list(pending.items()):
                    if depends[name] & ({f.step for f in failures} | blocked):
                        blocked.add(name)
                        del pending[name]
                        progress.update(name, "skipped", "an earlier step it depends on failed")
                    elif depends[name] <= done.keys():
                        running[pool.submit(self.execute, step, parent_id, progress)] = name
                        del pending[name]
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    try:
                        done[name] = future.result()
                    except StepFailed as e:
                        failures.append(e)
        log.info("steps:\n%s", progress.table())
        if failures:
            raise failures[0]

    def run(self) -> dict[str, str]:
        """Run the selected steps; return step name -> child run id."""
        cfg = self.cfg
        tracking.scrub_logs()
        # The `mlflow run .` CLI's own run: remembered for the later jobs of a sweep in this process.
        launcher = os.environ.pop("MLFLOW_RUN_ID", None) or os.environ.get(LAUNCHER_VAR)
        if launcher:
            os.environ[LAUNCHER_VAR] = launcher
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        # With env_manager=local a step runs `python` from PATH: make it this interpreter.
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        wandb_dir = OmegaConf.select(cfg, "tracking.wandb.dir") or self.output_dir
        wandb_mode = wandb_mirror.prepare_pipeline(  # fails fast, before any step, when online cannot work
            str(OmegaConf.select(cfg, "tracking.wandb.mode", default="auto")),
            str(cfg.main.project_name),
            str(cfg.main.experiment_name),
            Path(str(wandb_dir)),
        )
        dataset_kind, model_kind = cfg.dataset.get("kind", "table"), cfg.model.get("dataset_kind", "table")
        if dataset_kind != model_kind:
            raise StepError(
                f"main: model '{cfg.model.name}' trains on {model_kind} datasets, but dataset "
                f"'{cfg.dataset.name}' is of kind {dataset_kind}; pick a matching model= or dataset="
            )
        dataset_file, model_file = self.write_step_configs()
        steps = select(pipeline_steps(cfg, dataset_file, model_file, self.store), str(cfg.main.steps))
        unknown_forced = self.force - {s.name for s in steps}
        if unknown_forced:
            raise StepError(
                f"main: main.force_steps names {sorted(unknown_forced)}, which are not selected steps"
            )
        existing = self.existing_inputs(steps)
        depends = dependencies(steps, existing)
        stages = plan(steps, existing)
        tags = {
            "mlpipe.pipeline": "true",
            "mlpipe.group": str(cfg.main.experiment_name),
            "mlpipe.steps": ",".join(s.name for s in steps),
            "mlpipe.output_dir": str(self.output_dir),
            "mlpipe.wandb_mode": wandb_mode,
            **git_state(),
            **self.extra_tags,
        }
        if launcher:
            tags["mlpipe.launcher_run_id"] = launcher
        parent = self.client.create_run(
            self.experiment_id, run_name=f"pipeline {cfg.main.experiment_name}", tags=tags
        )
        parent_id = self.parent_id = parent.info.run_id
        if launcher:  # one tag per job of a sweep, so jobs do not overwrite each other
            job = self.extra_tags.get(TAG_SWEEP_JOB)
            self.client.set_tag(launcher, f"mlpipe.pipeline_run_id{f'.{job}' if job else ''}", parent_id)
        log.info(
            "pipeline run %s in experiment '%s' (%s); stages: %s",
            parent_id,
            cfg.main.project_name,
            tracking.tracking_uri(),
            " -> ".join("+".join(s.name for s in stage) for stage in stages),
        )
        failed = True
        children: dict[str, str] = {}
        try:
            resolved = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(resolved, dict)
            tracking.log_params(resolved, parent_id)
            self.client.log_text(
                parent_id, tracking.scrub(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml"
            )
            self.client.log_text(parent_id, installed_packages(), "environment/packages.txt")
            try:
                self.schedule(steps, depends, parent_id, children)
            except StepFailed as e:
                self.client.set_tag(parent_id, tracking.TAG_ERROR, str(e)[:5000])
                raise
            failed = False
        finally:
            self.client.log_text(parent_id, json.dumps(children, indent=2), "step_runs.json")
            tracking.finish_run(parent_id, failed)
        log.info("pipeline run %s finished", parent_id)
        return children
