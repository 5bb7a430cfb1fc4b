"""How a step's component is run: in a worker process forked from a warm parent (the default with
env_manager=local), as a nested `mlflow run` (its own Python and environment: what conda and
virtualenv need), or inside the pipeline's process (threads: no process start at all).

Every executor can be stopped (Ctrl-C): `stop` ends the steps' processes, after which `run` raises
`StepInterrupted` and no step starts any more."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from omegaconf import DictConfig

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline import interrupts, process_exit, workers
from mlpipe.tracking import store

if TYPE_CHECKING:
    from mlflow.projects.submitted_run import LocalSubmittedRun

AUTO, FORKSERVER, MLFLOW_RUN, INPROCESS = "auto", "forkserver", "mlflow_run", "inprocess"
EXECUTORS = (AUTO, FORKSERVER, MLFLOW_RUN, INPROCESS)


class ComponentFailed(Exception):
    """The component ended in error; its run holds the reason (tag mlpipe.error) when it could
    say; otherwise the message says how its process ended."""


class StoreGone(ComponentFailed):
    """The step gave up on the tracking store (it stopped answering): its run holds nothing."""


class StepInterrupted(Exception):
    """The step was stopped by Ctrl-C or SIGTERM (to it, or to the pipeline)."""


class Executor(Protocol):
    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None: ...

    def stop(self) -> None: ...


class MlflowRunExecutor:
    """Each step is `mlflow run components/<component>` with the pipeline's env manager
    (MLflow does not pass the outer one on to nested runs); values cross as `encode` writes them."""

    def __init__(self, env_manager: str) -> None:
        self.env_manager = env_manager
        self.stopping = False
        self._running: set[LocalSubmittedRun] = set()
        self._lock = threading.Lock()

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        import mlflow
        from mlflow.projects import utils
        from mlflow.projects.backend.local import LocalBackend

        from mlpipe.pipeline.contract import encode

        oom_kills_before = process_exit.out_of_memory_kills()
        # What `mlflow.projects.run(..., synchronous=True)` does, but keeping the step's process
        # (Ctrl-C stops it) and its exit status (what killed it); asynchronous, MLflow would start
        # a whole `mlflow run` command per step.
        submitted = LocalBackend().run(
            str(project.components_dir() / component),
            "main",
            {k: encode(v) for k, v in parameters.items()},
            None,
            {
                utils.PROJECT_ENV_MANAGER: self.env_manager,
                utils.PROJECT_SYNCHRONOUS: True,  # the local backend starts the command, returns its process
                utils.PROJECT_DOCKER_ARGS: None,
                utils.PROJECT_STORAGE_DIR: None,
                utils.PROJECT_BUILD_IMAGE: False,
                utils.PROJECT_DOCKER_AUTH: None,
                utils.MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG: run_id,
            },
            mlflow.get_tracking_uri(),
            experiment_id,
        )
        with self._lock:
            stopping = self.stopping
            self._running.add(submitted)
        try:
            if stopping:
                submitted.cancel()
            succeeded = submitted.wait()
        finally:
            with self._lock:
                self._running.discard(submitted)
        if succeeded:
            return
        code = submitted.command_proc.returncode
        if self.stopping or interrupts.is_interrupt_exit(code):
            raise StepInterrupted(process_exit.describe_exit(code))
        raise ComponentFailed(process_exit.describe_exit(code, oom_kills_before))

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for submitted in running:
            submitted.cancel()  # SIGTERM to the step's process, then waits for it


class WorkerExecutor:
    """Each step in a process forked from the warm parent (see workers.py), which the first step
    to run starts unless main.py did (an unchanged rerun never starts it)."""

    def __init__(self, preload: list[str]) -> None:
        self.preload = preload
        self.stopping = False
        self._running: set[workers.Worker] = set()
        self._lock = threading.Lock()

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        workers.start(self.preload)
        worker = workers.Worker(project.components_dir() / component, parameters, run_id)
        worker.start()
        with self._lock:
            stopping = self.stopping
            self._running.add(worker)
        try:
            if stopping:
                workers.stop_all([worker])
            code = worker.wait()
        finally:
            with self._lock:
                self._running.discard(worker)
        if code == 0:
            return
        if self.stopping or interrupts.is_interrupt_exit(code):
            raise StepInterrupted(process_exit.describe_exit(code))
        if code == workers.STORE_GONE_EXIT:
            raise StoreGone(f"{component}: gave up on the tracking store, which stopped answering")
        raise ComponentFailed(process_exit.describe_exit(code, worker.oom_kills_before))

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self._running)
        workers.stop_all(running)


class InProcessExecutor:
    """Calls the component's `run` in this process, in the step's run, with the typed values.

    The step keeps its run, its artifacts, its lineage and a private scratch folder; only the
    process start and the imports are saved. A thread cannot be stopped: on Ctrl-C the pipeline
    marks the runs killed and its process exits without waiting for them.
    """

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        from mlpipe.pipeline.components import load
        from mlpipe.pipeline.step import running_as

        loaded = load(project.components_dir() / component)
        try:
            params = loaded.contract.build(parameters, loaded.contract.step)
            with running_as(run_id):
                loaded.module.run(params)
        except store.StoreUnavailable as e:
            raise StoreGone(str(e)) from e
        except StepError as e:
            raise ComponentFailed(str(e)) from e
        except Exception as e:  # a bug in the step: keep its traceback, fail only this step
            logging.getLogger(component).exception("unexpected error")
            raise ComponentFailed(f"{type(e).__name__}: {e}") from e

    def stop(self) -> None:
        pass


def resolve(kind: str, env_manager: str) -> str:
    """The executor `main.executor` names (`auto`: forkserver with env_manager=local, else a
    nested `mlflow run`, which builds each step's environment)."""
    if kind not in EXECUTORS:
        raise StepError(f"main: executor '{kind}' in main.executor; expected one of {', '.join(EXECUTORS)}")
    if kind == AUTO:
        return FORKSERVER if env_manager == "local" else MLFLOW_RUN
    if kind in (FORKSERVER, INPROCESS) and env_manager != "local":
        raise StepError(
            f"main: main.executor={kind} runs steps in this environment; "
            f"it needs main.env_manager=local, not '{env_manager}'"
        )
    return kind


def chosen(cfg: DictConfig) -> str:
    return resolve(str(cfg.main.get("executor", AUTO)), str(cfg.main.env_manager))


def warm_up(cfg: DictConfig) -> None:
    """Start the forkserver's warm parent now, importing while this process opens the store, when
    a step will surely run; otherwise the first step that runs starts it."""
    if chosen(cfg) == FORKSERVER and workers.surely_needed(cfg):
        workers.start(workers.preload_modules(cfg))


def make_executor(cfg: DictConfig) -> Executor:
    kind = chosen(cfg)
    if kind == FORKSERVER:
        return WorkerExecutor(workers.preload_modules(cfg))
    if kind == INPROCESS:
        return InProcessExecutor()
    return MlflowRunExecutor(str(cfg.main.env_manager))
