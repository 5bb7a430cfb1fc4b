"""Steps in worker processes forked from a warm parent (the `forkserver` executor).

Started as a Python process of its own, a step pays the interpreter's start, MLflow's import and
the store's opening again, some 3 s per step on the development machine. Here one parent process
imports MLflow, pandas, scikit-learn and the model's own library (torch for a torch model) once,
then forks one worker per step (Python's multiprocessing `forkserver`): a worker starts in
milliseconds, runs the step's component in the step's run in its own address space, and gives its
memory back when it ends. A crash, a kill or a leak ends the worker, not the pipeline.

The warm parent is a process of its own, not the pipeline's: the pipeline's process runs threads
(the scheduler, MLflow's telemetry, SQLAlchemy's pool) that a fork must not copy. The parent only
imports (no Python thread runs there; the native helper threads of OpenBLAS and jemalloc prepare
for a fork themselves) and never opens the store. W&B, when the run mirrors to it, is imported
there too; the temporary folders it makes at import are replaced by one per worker.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpipe.errors import StepError
from mlpipe.pipeline import interrupts, process_exit
from mlpipe.pipeline.fast_exit import exit_after
from mlpipe.processes import alive
from mlpipe.tracking import store, wandb_mirror

# What the steps of this project import, loaded once by the warm parent ("__main__": main.py,
# which a worker would otherwise run again). A module that fails to import is skipped there and
# fails, with its real error, in the step that needs it.
BASE_PRELOAD = (
    "__main__",
    "mlpipe.pipeline.step",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlpipe.data.spec",
    "mlpipe.data.kinds.table",
    "mlpipe.data.checks",
    "mlpipe.data.check_fixtures",
    "mlpipe.models.scoring",
    "mlpipe.models.evaluation",
    "mlpipe.models.sklearn_model",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "matplotlib.backends.backend_agg",
    "scipy.stats",
    "pytest",
)
# W&B, with the module its `init` imports every time (about 0.4 s of CPU a step otherwise).
WANDB_PRELOAD = ("wandb", "wandb.sdk.launch.inputs.internal")
STOP_GRACE_S = 5.0  # a stopped step's time to end its runs before it is killed
STORE_GONE_EXIT = 75  # EX_TEMPFAIL: the step gave up on a tracking store that stopped answering
WORKER_CLEANUP_S = 2 * STOP_GRACE_S  # a stopped step that nobody killed then ends itself
WARM_PARENT = "mlpipe.pipeline.warm_parent"  # imported last there: the threads it runs

_context = multiprocessing.get_context("forkserver")
_starting = threading.Lock()  # steps starting side by side start one warm parent
log = logging.getLogger("main")


def model_modules(model: Mapping[str, Any]) -> list[str]:
    """The modules holding every `_target_` of the model config (`sklearn.ensemble`,
    `torch.optim`): the model's own library, worth importing once for all its steps."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if isinstance(target, str) and "." in target:
                found.append(target.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model)
    return list(dict.fromkeys(found))


def preload_modules(cfg: DictConfig) -> list[str]:
    """The base, the model's own library, W&B when this run mirrors to it, and the module that
    leaves the parent ready to fork."""
    model = OmegaConf.to_container(cfg.model, resolve=True) if "model" in cfg else {}
    assert isinstance(model, dict)
    mode = str(OmegaConf.select(cfg, "tracking.wandb.mode", default="disabled"))
    try:
        mirrored = wandb_mirror.resolve_mode(mode, wandb_mirror.api_key() is not None) != "disabled"
    except StepError:
        mirrored = False  # said in one line when the pipeline starts
    return [*BASE_PRELOAD, *model_modules(model), *(WANDB_PRELOAD if mirrored else ()), WARM_PARENT]


def surely_needed(cfg: DictConfig) -> bool:
    """Whether some step will run for sure, before the store is open: the SQLite store does not
    hold the experiment yet (a new store, or one `mlflow run` has just made), the cache is off, or
    steps are forced. Started then, the warm parent imports while main.py opens the store;
    otherwise the first step the cache cannot serve starts it."""
    from mlpipe.tracking import store
    from mlpipe.tracking.sqlite_store import has_experiment

    new_experiment = has_experiment(store.tracking_uri(), str(cfg.main.project_name)) is False
    return new_experiment or not cfg.main.get("cache", True) or bool(cfg.main.get("force_steps"))


def start(modules: Iterable[str]) -> None:
    """Start the warm parent, importing `modules`, unless this process has one already (a sweep's
    jobs share it). Returns at once: the parent imports while this process goes on, and the first
    worker waits for it."""
    with _starting:
        if warm_parent_pid() is None:
            _context.set_forkserver_preload(list(modules))
            atexit.register(stop_warm_parent)
        multiprocessing.forkserver.ensure_running()


def stop_warm_parent() -> None:
    """End the warm parent now (at this process's exit: left alone, it would notice only once it
    has finished importing, and then spend a second tearing its imports down)."""
    pid = warm_parent_pid()
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def warm_parent_pid() -> int | None:
    return multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


class Worker:
    """One step's process, forked from the warm parent."""

    def __init__(self, folder: Path, parameters: Mapping[str, Any], run_id: str) -> None:
        from mlpipe.tracking.secrets import environment

        self.process = _context.Process(
            target=run_step,
            args=(str(folder), dict(parameters), run_id, environment()),
            name=f"mlpipe-step-{folder.name}",
            daemon=False,  # a daemonic process may not start processes: joblib would run one job at a time
        )
        self._pidfd: int | None = None
        self._closed = False  # set once the process is known to have ended
        self._handle = threading.Lock()  # the pidfd, between the step's thread and `stop_all`
        self.oom_kills_before = process_exit.out_of_memory_kills()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self) -> None:
        self.process.start()
        try:  # a handle on the process itself: it outlives the warm parent, a pid may not
            self._pidfd = os.pidfd_open(self.process.pid)  # type: ignore[arg-type]
        except (AttributeError, OSError):
            self._pidfd = None

    def wait(self) -> int | None:
        """The process's exit status, once the process itself has ended. The warm parent reports
        it; a parent that died first (a SIGTERM to the whole process group reaches it too) reports
        255 while the worker may still run: it is waited for on its own handle, so that `stop_all`
        can still stop it meanwhile."""
        self.process.join()
        if self._pidfd is not None:
            select.select([self._pidfd], [], [])  # readable once the process has ended
        elif self.process.exitcode == 255 and self.process.pid is not None:
            while alive(self.process.pid):  # no handle: the pid, until it is gone
                time.sleep(0.1)
        self._close()
        return self.process.exitcode

    def signal(self, signum: int) -> None:
        with self._handle:  # never a handle `wait` has closed (its number may be reused)
            try:
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, signum)
                elif self.process.pid is not None and not self._closed:
                    os.kill(self.process.pid, signum)
            except (ProcessLookupError, OSError):
                pass  # already gone

    def wait_gone(self, timeout: float) -> bool:
        """Whether the process has ended within `timeout` seconds (even if its warm parent died
        and cannot report its status)."""
        with self._handle:
            pidfd = self._pidfd
            if pidfd is None:  # no handle (or closed: the process has ended)
                return self._ended_without_handle(timeout)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))

    def _ended_without_handle(self, timeout: float) -> bool:
        if self._closed:
            return True
        self.process.join(timeout)
        # 255 may be a warm parent that died first: then only the pid says whether it runs.
        return self.process.exitcode is not None and not (
            self.process.exitcode == 255 and self.process.pid is not None and alive(self.process.pid)
        )

    def _close(self) -> None:
        with self._handle:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            self._closed = True


def stop_all(workers: Iterable[Worker], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to each worker, SIGKILL to those still there after `grace` seconds; returns when
    every one has ended (no code of theirs runs after this)."""
    workers = list(workers)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        if not worker.wait_gone(deadline - time.monotonic()):
            log.info("step process %s did not stop within %.0f s: killed", worker.pid, grace)
            worker.signal(signal.SIGKILL)
            worker.wait_gone(10.0)


# -- inside the worker --------------------------------------------------------------------------
def run_step(folder: str, parameters: dict[str, Any], run_id: str, environ: dict[str, str]) -> None:
    """The worker's life: the pipeline's environment as the step started, the component run in the
    step's run, then exit (0, or 1 with the reason on the run, or 128 + the signal that stopped it)."""
    os.environ.clear()
    os.environ.update(environ)
    wandb_mirror.own_folders()
    interrupts.die_with_parent()  # the warm parent gone: stop rather than run on alone
    # Stopped, the step ends its runs; if that hangs (a store that does not answer) and no
    # pipeline is left to kill it, it ends itself.
    interrupts.raise_on_signals(cleanup_s=WORKER_CLEANUP_S)
    exit_after(_run_component, Path(folder), parameters, run_id)


def _run_component(folder: Path, parameters: dict[str, Any], run_id: str) -> None:
    from mlpipe.pipeline.components import load

    step = folder.name
    try:
        threads = getattr(sys.modules.get(WARM_PARENT), "THREADS", [])
        if threads:
            raise StepError(
                f"{step}: the warm parent runs Python threads ({', '.join(threads)}) that a preloaded "
                "module started, and a fork copies their locks; use main.executor=mlflow_run"
            )
        component = load(folder)
        step = component.contract.step
        params = component.contract.build(parameters, f"main: config {step}")
        from mlpipe.pipeline.step import running_as

        with running_as(run_id):
            component.module.run(params)
    except interrupts.Interrupted as e:
        sys.exit(e.exit_code)
    except store.StoreUnavailable as e:  # its run could not be told: the exit status tells main.py
        logging.getLogger(step).error("%s", e)
        sys.exit(STORE_GONE_EXIT)
    except StepError as e:
        record_error(run_id, str(e))
        sys.exit(1)
    except Exception as e:  # a bug in the step: keep its traceback on stderr
        if store.lost_store(e):
            logging.getLogger(step).error("%s", store.unavailable(step, e))
            sys.exit(STORE_GONE_EXIT)
        logging.getLogger(step).exception("unexpected error")
        record_error(run_id, f"{type(e).__name__}: {e}")
        sys.exit(1)


def record_error(run_id: str, reason: str) -> None:
    from mlflow.tracking import MlflowClient

    from mlpipe.tracking import runs

    client = MlflowClient()
    runs.note_error(client, client.get_run(run_id), reason)
