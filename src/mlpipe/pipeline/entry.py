"""What main.py does around the orchestrator: set this process (and the ones it starts) up for the
project being run, check the command line before anything starts, and run one job (one pipeline
invocation, or one job of a sweep), turning its failure into one line or a sweep's failure marker,
and a Ctrl-C or SIGTERM into KILLED runs and exit code 130 or 143.

MLflow, pandas and the orchestrator are imported only once the config is composed: by then the
step workers' warm parent is importing them too, on another core (see workers.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline import executors, interrupts, workers
from mlpipe.pipeline.config import check_overrides, register_resolvers, searchpath_override
from mlpipe.tracking import store, wandb_mirror
from mlpipe.tracking.secrets import scrub_logs

LAUNCHER_VAR = "MLPIPE_LAUNCHER_RUN_ID"  # the `mlflow run` launcher run, kept for every sweep job
# Interrupted, main.py stops its steps (SIGKILL after workers.STOP_GRACE_S) and ends its runs
# KILLED; past this it exits without finishing the books (a store that stopped answering).
MAIN_CLEANUP_S = 30.0


def prepare_process(root: Path, argv: list[str]) -> None:
    """Once per `python main.py`: the project, the store and the interpreter every step uses,
    the overrides checked and the store asked (exit 2 with one line when either is wrong)."""
    launcher = os.environ.pop("MLFLOW_RUN_ID", None)  # set when `mlflow run` started us
    if launcher:  # a signal that kills only `mlflow run` must not leave this process running
        interrupts.die_with_parent()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # the experiment is main.project_name's
    # `mlflow run` hands down its default store relative to where it was typed; results go there.
    results = project.launch_dir() if launcher else root
    project.enter(root, results)
    if os.environ.get(store.ENV_URI):
        os.environ[store.ENV_URI] = store.absolute(
            os.environ[store.ENV_URI], results if launcher else Path.cwd()
        )
    if launcher:
        os.environ[LAUNCHER_VAR] = launcher
    prepare_job()
    try:
        check_overrides(argv)
        store.check_answers()  # a server or database that is not there: one line, not minutes of retries
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    argv.insert(0, searchpath_override())  # before any flag: `... -m` ends many command lines


def prepare_job() -> None:
    """What every process that runs a job needs, whoever started it: main.py, or a Ray worker
    that got the project, the store and the settings through its runtime environment."""
    project.enter(project.root(), project.results_root())
    # With env_manager=local a step runs `python` from PATH: make it this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    paths = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *paths])
    register_resolvers()


def run_job(cfg: DictConfig) -> float | None:
    """One pipeline invocation; return the sweep objective (`main.objective`) in a multirun."""
    prepare_job()
    try:  # before the store is opened: every MLflow call of this job and its steps is bounded
        store.bound_retries(float(OmegaConf.select(cfg, "tracking.store_timeout_s", default=60)))
    except (StepError, ValueError, TypeError) as e:
        reason = str(e) if isinstance(e, StepError) else f"main: tracking.store_timeout_s: {e}"
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)
    with contextlib.suppress(StepError):  # a bad main.executor is said in one line further on
        executors.warm_up(cfg)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S", force=True
    )
    scrub_logs()
    from mlpipe.pipeline.orchestrator import Pipeline
    from mlpipe.pipeline.sweep import FAILED, is_multirun, job_record, job_tags, objective

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    pipeline = None
    try:
        pipeline = Pipeline(
            cfg,
            output_dir,
            tags=job_tags(),
            launcher=os.environ.get(LAUNCHER_VAR),
            overrides=list(HydraConfig.get().overrides.task),
        )
        wandb_dir = OmegaConf.select(cfg, "tracking.wandb.dir") or output_dir
        wandb_mode = wandb_mirror.prepare_pipeline(  # fails fast, before any step, when online cannot work
            str(OmegaConf.select(cfg, "tracking.wandb.mode", default="auto")),
            str(cfg.main.project_name),
            str(cfg.main.experiment_name),
            Path(str(wandb_dir)),
        )
        pipeline.extra_tags["mlpipe.wandb_mode"] = wandb_mode
        children = pipeline.run()
        value = objective(cfg, children) if is_multirun() else None  # only sweepers read it
    except Exception as e:
        if store.lost_store(e) and not isinstance(e, StepError):
            e = store.unavailable("main", e)  # the store stopped answering: one line
        if not is_multirun() and not isinstance(e, StepError):
            raise  # a bug: keep the traceback
        reason = str(e) if isinstance(e, StepError) else f"{type(e).__name__}: {e}"
        print(f"error: {reason}", file=sys.stderr)
        if not is_multirun():
            sys.exit(1)
        if not isinstance(e, StepError):
            logging.getLogger("main").exception("job failed")
        # One failed job must not end the sweep: record it and return the failure marker.
        parent = pipeline.parent_id if pipeline else None
        job_record("FAILED", parent_run_id=parent, error=reason).write(output_dir)
        return FAILED
    if is_multirun():
        job_record("FINISHED", objective=value, parent_run_id=pipeline.parent_id, step_runs=children).write(
            output_dir
        )
    return value


def run_interruptible(main: Callable[[], Any]) -> None:
    """main.py's whole work; stopped by Ctrl-C or SIGTERM (the pipeline has ended its runs KILLED),
    say so and exit 130 or 143 at once, without waiting for threads or exit handlers."""
    interrupts.raise_on_signals(cleanup_s=MAIN_CLEANUP_S)
    try:
        main()
    except interrupts.Interrupted as e:
        launcher = os.environ.get(LAUNCHER_VAR)
        if launcher:
            from mlflow.tracking import MlflowClient

            from mlpipe.tracking import runs

            try:
                with interrupts.deferred():
                    runs.kill_launcher(MlflowClient(), launcher, f"interrupted by {e}")
            except Exception as error:  # the store gone too: still stop, and say so
                print(f"the launcher run {launcher} could not be ended: {error}", file=sys.stderr)
        workers.stop_warm_parent()
        print(f"interrupted by {e}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(e.exit_code)
