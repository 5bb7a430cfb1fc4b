"""Running the pipeline: one parent run, one child run per step, each step started as soon as
the steps it depends on are done, reused from the cache when nothing it depends on changed.

The orchestrator plans and schedules; the entry point set the environment up, the definition
checked the config, the tracking layer keeps the books."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline import cache, executors, interrupts
from mlpipe.pipeline.definition import chosen_components, names_list, selected_steps, step_names
from mlpipe.pipeline.planner import StepSpec, dependencies, plan
from mlpipe.pipeline.progress import Progress
from mlpipe.tracking import runs, store
from mlpipe.tracking.artifacts import AUTO, ArtifactStore, parse_reference

log = logging.getLogger("main")


class StepFailed(StepError):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"main: step '{step}' failed: {reason}")
        self.step = step


class StepKilled(StepFailed):
    """The step's process was stopped by a signal (Ctrl-C, SIGTERM): its run ends KILLED."""


def default_run_name(cfg: DictConfig, tags: dict[str, str]) -> str:
    """What a pipeline run ran: the dataset, the model, and the sweep job if it is one."""
    parts = [str(cfg.dataset.name), str(cfg.model.get("name", "model"))]
    job = tags.get(runs.TAG_SWEEP_JOB)
    return " · ".join([*parts, f"job {job}"] if job is not None else parts)


class Pipeline:
    def __init__(
        self,
        cfg: DictConfig,
        output_dir: Path,
        tags: dict[str, str] | None = None,
        launcher: str | None = None,
        overrides: Sequence[str] = (),
        parent_run_id: str | None = None,
        run_name: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.extra_tags = tags or {}  # e.g. the sweep id and job number of a multirun job
        self.launcher = launcher  # the `mlflow run` launcher run, when there is one
        self.overrides = list(overrides)  # the Hydra overrides `cfg` was composed with
        self.nested_in = parent_run_id  # a run this pipeline's run is a child of (a comparison)
        self.run_name = run_name or default_run_name(cfg, self.extra_tags)
        self.parent_id: str | None = None
        # The config is checked before the store is touched: a bad config starts nothing.
        self.executor = executors.make_executor(cfg)
        self.steps = selected_steps(cfg, *self.write_step_configs(), self.overrides)
        self.client = MlflowClient()
        self.stopping = False  # set on Ctrl-C: no step starts, and none is recorded as reused
        self.active: dict[str, str] = {}  # step -> run id, while its component runs
        self.use_cache = bool(cfg.main.get("cache", True))
        self.force = step_names(names_list(cfg.main.get("force_steps")), chosen_components(cfg))
        self.produced: dict[str, str] = {}  # artifact name -> digest written in this run
        self.commit: dict[str, str] = {}  # the project's git state, on every run of the pipeline
        self._lock = threading.Lock()

    def write_step_configs(self) -> tuple[Path, Path]:
        """The composed dataset and model configs, as files the steps read."""
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
        pipeline produced for `name:latest` or `name:auto`, so parallel pipelines never read
        each other's outputs), and the digests of those versions."""
        params = step.parameters()
        digests: dict[str, str] = {}
        for key, ref in step.reads.items():
            name, selector = parse_reference(ref)
            with self._lock:
                produced = self.produced.get(name) if selector in ("latest", AUTO) else None
            version = self.store.version_with(name, produced) if produced else self.store.resolve(ref)
            params[key] = version.ref
            digests[name] = version.digest
        return params, digests

    def execute(self, step: StepSpec, parent_id: str, progress: Progress) -> str:
        """Run (or reuse) one step; return its child run id. A store that stopped answering (for
        the step, or for this process's bookkeeping) fails the step in one line."""
        try:
            return self._execute(step, parent_id, progress)
        except StepFailed:
            raise
        except Exception as e:
            if not isinstance(e, store.StoreUnavailable) and not store.lost_store(e):
                raise
            reason = str(e if isinstance(e, store.StoreUnavailable) else store.unavailable(step.name, e))
            progress.update(step.name, "failed", reason)
            raise StepFailed(step.name, reason) from e

    def _execute(self, step: StepSpec, parent_id: str, progress: Progress) -> str:
        try:
            params, digests = self.pin_inputs(step)
        except StepError as e:
            raise StepFailed(step.name, str(e)) from e
        key = cache.step_key(step.name, step.component, params, digests)
        reusable = self.use_cache and not step.side_effects and step.name not in self.force
        if reusable and cache.cacheable(params):
            original = cache.find_reusable(self.client, self.experiment_id, key)
            self.check_not_stopping(step)
            lost = self.store.lost_outputs(original) if original is not None else []
            if lost:  # reuse only what can still be read: the step writes them again
                log.info("%s: not reused, the files of %s are gone", step.name, ", ".join(lost))
            elif original is not None:
                tags = {
                    **self.store.lineage_tags(original),
                    cache.TAG_REUSED: original.info.run_id,
                    cache.TAG_KEY: key,
                }
                run_id = runs.record_reuse(
                    self.client, self.experiment_id, parent_id, step.name, step.component, original, tags
                )
                progress.update(
                    step.name, "reused", f"run {original.info.run_id} (same code, parameters, inputs)"
                )
                self.collect_outputs(step, original)  # the reuse record carries the same outputs
                return run_id
        with self._lock:
            self.check_not_stopping(step)
            run_id = runs.start_step_run(
                self.client,
                self.experiment_id,
                parent_id,
                step.name,
                step.component,
                {cache.TAG_KEY: key, **self.commit},
            )
            self.active[step.name] = run_id
        progress.update(step.name, "running", f"run {run_id}")
        try:
            self.executor.run(step.component, params, run_id, self.experiment_id)
        except executors.StepInterrupted as e:
            reason = f"interrupted: {e}"
            runs.end_step_run(self.client, run_id, reason, killed=True)
            progress.update(step.name, "killed", reason)
            raise StepKilled(step.name, reason) from e
        except executors.StoreGone as e:
            gone = store.unavailable(step.name)  # and this process tries each call once from now
            with contextlib.suppress(Exception):  # succeeds only if the store is back
                runs.end_step_run(self.client, run_id, str(gone))
            raise gone from e
        except executors.ComponentFailed as e:
            reason = self.client.get_run(run_id).data.tags.get(runs.TAG_ERROR) or str(e)
            runs.end_step_run(self.client, run_id, reason)  # after a hard crash it is still RUNNING
            progress.update(step.name, "failed", reason)
            raise StepFailed(step.name, reason) from e
        finally:
            with self._lock:
                self.active.pop(step.name, None)
        progress.update(step.name, "done", f"run {run_id}")
        self.collect_outputs(step, self.client.get_run(run_id))
        return run_id

    def check_not_stopping(self, step: StepSpec) -> None:
        if self.stopping:
            raise StepKilled(step.name, "interrupted before it started")

    def collect_outputs(self, step: StepSpec, run: Run) -> None:
        outputs = self.store.outputs_of(run)
        with self._lock:
            for name in step.writes.values():
                if name in outputs:  # a step may end with nothing to write (inference.on_busy=skip)
                    self.produced[name] = outputs[name]

    def schedule(
        self, steps: list[StepSpec], depends: dict[str, set[str]], parent_id: str, done: dict[str, str]
    ) -> None:
        """Start each step once the steps it depends on are done; a failure stops the steps that
        depend on it (running ones finish). Fill `done` (step -> run id); raise the first failure.
        Interrupted (Ctrl-C, SIGTERM), stop every step's process first."""
        progress = Progress([s.name for s in steps], log)
        pending = {s.name: s for s in steps}
        running: dict[Future[str], str] = {}
        failures: list[StepFailed] = []
        blocked: set[str] = set()
        workers = max(1, int(self.cfg.main.get("max_parallel", 4)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step")
        try:
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
        except KeyboardInterrupt as e:  # Interrupted, or Ctrl-C where main.py did not set it up
            self.interrupt(interrupts.signal_name(e), running, pool)
            log.info("steps:\n%s", progress.table())
            raise
        pool.shutdown()
        log.info("steps:\n%s", progress.table())
        if failures:
            raise failures[0]

    def interrupt(self, cause: str, running: dict[Future[str], str], pool: ThreadPoolExecutor) -> None:
        """Stop every step's process, then end as KILLED the runs of the steps that were running."""
        log.info("interrupted by %s: stopping %d running step(s)", cause, len(self.active))
        with self._lock:
            self.stopping = True
        self.executor.stop()  # returns once their processes have ended
        pool.shutdown(wait=False, cancel_futures=True)
        wait(running, timeout=2.0)  # their threads end the runs KILLED
        with self._lock:
            left = dict(self.active)  # in-process steps: a thread cannot be stopped
        for run_id in left.values():
            runs.end_step_run(self.client, run_id, f"interrupted by {cause}", killed=True)

    def end_run(self, parent_id: str, children: dict[str, str], error: str | None, killed: bool) -> None:
        """End the pipeline run; a store given up on is tried once, and the next pipeline ends
        the run if that fails (the error said already is the one that counts)."""
        try:
            with interrupts.deferred():
                runs.end_pipeline_run(self.client, parent_id, children, error, killed)
        except Exception as e:
            if not (store.given_up() or store.lost_store(e)):
                raise
            log.info("pipeline run %s is left RUNNING: the tracking store does not answer", parent_id)

    def fail_stale_runs(self) -> None:
        """Runs left RUNNING by a process of this host that is gone (killed, or stopped by a store
        that stopped answering) end FAILED, in this experiment and the launcher's."""
        experiments = [self.experiment_id]
        if self.launcher:
            with contextlib.suppress(Exception):
                experiments.append(self.client.get_run(self.launcher).info.experiment_id)
        stale = runs.fail_stale_runs(self.client, sorted(set(experiments)), f"pipeline '{self.run_name}'")
        if stale:
            log.info(
                "marked FAILED %d run(s) left RUNNING by a process that is gone: %s",
                len(stale),
                ", ".join(f"{r.info.run_name} ({r.info.run_id})" for r in stale),
            )

    def run(self) -> dict[str, str]:
        """Run the selected steps; return step name -> child run id."""
        cfg, steps = self.cfg, self.steps
        self.experiment_id = store.ensure_experiment(str(cfg.main.project_name))
        self.store = ArtifactStore(self.experiment_id, self.client)
        self.fail_stale_runs()
        existing = self.existing_inputs(steps)
        depends = dependencies(steps, existing)
        stages = plan(steps, existing)
        self.commit = runs.git_state(project.root())
        tags = {
            "mlpipe.group": str(cfg.main.experiment_name),
            "mlpipe.steps": ",".join(s.name for s in steps),
            "mlpipe.output_dir": str(self.output_dir),
            **self.commit,
            **self.extra_tags,
            **({runs.TAG_LAUNCHER: self.launcher} if self.launcher else {}),
            **({runs.TAG_PARENT: self.nested_in} if self.nested_in else {}),
        }
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(resolved, dict)
        with interrupts.deferred():  # a Ctrl-C now lands once the run exists, to be ended KILLED
            parent_id = self.parent_id = runs.start_pipeline_run(
                self.client,
                self.experiment_id,
                self.run_name,
                tags,
                resolved,
                OmegaConf.to_yaml(cfg, resolve=True),
            )
            if self.launcher:
                runs.link_launcher(
                    self.client, self.launcher, parent_id, self.extra_tags.get(runs.TAG_SWEEP_JOB)
                )
        log.info(
            "pipeline run %s in experiment '%s' (%s); stages: %s",
            parent_id,
            cfg.main.project_name,
            store.tracking_uri(),
            " -> ".join("+".join(s.name for s in stage) for stage in stages),
        )
        children: dict[str, str] = {}
        error: str | None = "interrupted"
        killed = True
        try:
            self.schedule(steps, depends, parent_id, children)
            error, killed = None, False
        except StepFailed as e:  # a step stopped by a signal is an interrupted pipeline too
            error, killed = str(e), isinstance(e, StepKilled)
            raise
        except KeyboardInterrupt as e:
            error = f"interrupted by {interrupts.signal_name(e)}"
            raise
        except Exception as e:
            error, killed = f"{type(e).__name__}: {e}", False
            raise
        finally:
            self.end_run(parent_id, children, error, killed)
            log.info(
                "pipeline run '%s' %s: %s",
                self.run_name,
                "killed" if killed else "failed" if error else "finished",
                store.ui_url(self.experiment_id, parent_id),
            )
        return children
