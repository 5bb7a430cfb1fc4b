"""How a step's component is run: as a nested `mlflow run` (its own process and environment), or
inside the pipeline's process (env_manager=local only: no process start, no re-imports)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline.components import load
from mlpipe.pipeline.contract import encode
from mlpipe.pipeline.step import running_as

EXECUTORS = ("mlflow_run", "inprocess")


class ComponentFailed(Exception):
    """The component ended in error; its run holds the reason (tag mlpipe.error)."""


class Executor(Protocol):
    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None: ...


class MlflowRunExecutor:
    """Each step is `mlflow run components/<component>` with the pipeline's env manager
    (MLflow does not pass the outer one on to nested runs); values cross as `encode` writes them."""

    def __init__(self, env_manager: str) -> None:
        self.env_manager = env_manager

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        import mlflow.projects
        from mlflow.exceptions import ExecutionException

        try:
            mlflow.projects.run(
                str(project.components_dir() / component),
                entry_point="main",
                parameters={k: encode(v) for k, v in parameters.items()},
                env_manager=self.env_manager,
                experiment_id=experiment_id,
                run_id=run_id,
                synchronous=True,
            )
        except ExecutionException as e:
            raise ComponentFailed(str(e)) from e


class InProcessExecutor:
    """Calls the component's `run` in this process, in the step's run, with the typed values.

    The step keeps its run, its artifacts, its lineage and a private scratch folder; only the
    process start and the imports are saved.
    """

    def run(self, component: str, parameters: dict[str, Any], run_id: str, experiment_id: str) -> None:
        loaded = load(project.components_dir() / component)
        try:
            params = loaded.contract.build(parameters, loaded.contract.step)
            with running_as(run_id):
                loaded.module.run(params)
        except StepError as e:
            raise ComponentFailed(str(e)) from e
        except Exception as e:  # a bug in the step: keep its traceback, fail only this step
            logging.getLogger(component).exception("unexpected error")
            raise ComponentFailed(f"{type(e).__name__}: {e}") from e


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
