"""How a step's component is run: as a nested `mlflow run` (its own process and environment), or
inside the pipeline's process (env_manager=local only: no process start, no re-imports)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import mlflow.projects
from mlflow.exceptions import ExecutionException

from mlpipe.component import running_as
from mlpipe.errors import StepError
from mlpipe.paths import COMPONENTS_DIR

EXECUTORS = ("mlflow_run", "inprocess")


class ComponentFailed(Exception):
    """The component ended in error; its run holds the reason (tag mlpipe.error)."""


class Executor(Protocol):
    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None: ...


class MlflowRunExecutor:
    """Each step is `mlflow run components/<component>` with the pipeline's env manager
    (MLflow does not pass the outer one on to nested runs)."""

    def __init__(self, env_manager: str) -> None:
        self.env_manager = env_manager

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        try:
            mlflow.projects.run(
                str(COMPONENTS_DIR / component),
                entry_point="main",
                parameters={k: str(v) for k, v in parameters.items()},
                env_manager=self.env_manager,
                experiment_id=experiment_id,
                run_id=run_id,
                synchronous=True,
            )
        except ExecutionException as e:
            raise ComponentFailed(str(e)) from e


class InProcessExecutor:
    """Calls the component's own `parse_args` and `go` in this process, in the step's run.

    The step keeps its run, its artifacts, its lineage and a private scratch folder; only the
    process start and the imports are saved.
    """

    _modules: dict[str, ModuleType] = {}  # noqa: RUF012 (one cache per process, on purpose)
    _lock = threading.Lock()

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        module = self.load(component)
        argv = [item for key, value in parameters.items() for item in (f"--{key}", str(value))]
        args = module.parse_args(argv)
        try:
            with running_as(run_id):
                module.go(args)
        except StepError as e:
            raise ComponentFailed(str(e)) from e
        except Exception as e:  # a bug in the step: keep its traceback, fail only this step
            logging.getLogger(component).exception("unexpected error")
            raise ComponentFailed(f"{type(e).__name__}: {e}") from e

    @classmethod
    def load(cls, component: str) -> ModuleType:
        with cls._lock:
            if component not in cls._modules:
                path = COMPONENTS_DIR / component / "run.py"
                spec = importlib.util.spec_from_file_location(f"mlpipe_component_{component}", path)
                if spec is None or spec.loader is None or not Path(path).is_file():
                    raise StepError(f"main: component '{component}' has no run.py at {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                cls._modules[component] = module
            return cls._modules[component]


def make_executor(kind: str, env_manager: str) -> Executor:
    if kind not in EXECUTORS:
        raise StepError(f"main: executor '{kind}' in main.executor; expected one of {', '.join(EXECUTORS)}")
    if kind == "inprocess":
        if env_manager != "local":
            raise StepError(
                f"main: main.executor=inprocess runs steps in this environment; "
                f"it needs main.env_manager=local, not '{env_manager}'"
            )
        return InProcessExecutor()
    return MlflowRunExecutor(env_manager)
