"""Running the batches: in this process (the ledger commit of one batch while the next is
scored), or in a pool of worker processes forked from it, each with the models it loaded."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from mlpipe.data.kinds import NewData
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.inference import scorer
from mlpipe.inference.plan import Task

WHERE = "inference"
IN_FLIGHT = 2  # batches queued per worker: one running, one ready


def cpu_seconds() -> float:
    """CPU time of this process and of the children it has reaped (its workers, once shut down)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def start_method() -> str:
    """Fork where there is one: a worker starts at once with the models this process loaded.
    Workers cap their math threads after the fork (`scorer.limit_threads`), as PyTorch's own
    data-loader workers do, so no thread pool of the parent is used in them."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def in_process(workers: int, tasks: list[Task]) -> bool:
    return workers <= 1 or len(tasks) <= 1


def load_here(folders: dict[str, str], spec: DatasetSpec, workers: int, tasks: list[Task]) -> None:
    """Load the models in this process when it scores, or when its workers fork from it."""
    if in_process(workers, tasks) or start_method() == "fork":
        scorer.start(folders, spec)


def run_batches(
    tasks: list[Task],
    new: NewData,
    spec: DatasetSpec,
    folders: dict[str, str],
    workers: int,
    done: Callable[[scorer.BatchResult], None],
) -> None:
    """Score every batch, calling `done` with each result as it comes back (`load_here` first:
    the models this process needs)."""
    method = start_method()
    if in_process(workers, tasks):
        # The ledger commit of one batch runs while the next one is scored.
        with ThreadPoolExecutor(1, thread_name_prefix="ledger") as committer:
            committing: Future[None] | None = None
            for name, rows in tasks:
                result = scorer.score(name, rows, spec.kind.batch(new, np.asarray(rows)))
                if committing is not None:
                    committing.result()
                committing = committer.submit(done, result)
            if committing is not None:
                committing.result()
        return
    workers = min(workers, len(tasks))
    threads = max(1, (os.cpu_count() or 1) // workers)
    initializer, arguments = (
        (scorer.limit_threads, (threads,))
        if method == "fork"
        else (scorer.start_worker, (folders, spec, threads))
    )
    queue: Iterator[tuple[str, list[int]]] = iter(tasks)
    pool = ProcessPoolExecutor(
        workers, multiprocessing.get_context(method), initializer=initializer, initargs=arguments
    )
    running: set[Future[scorer.BatchResult]] = set()

    def submit() -> None:
        task = next(queue, None)
        if task is not None:
            name, rows = task
            running.add(pool.submit(scorer.score, name, rows, spec.kind.batch(new, np.asarray(rows))))

    try:
        for _ in range(IN_FLIGHT * workers):
            submit()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                running.discard(future)
                done(future.result())
                submit()
    except BrokenProcessPool as e:
        raise StepError(
            f"{WHERE}: a scoring worker died ({e}); inference.workers=1 scores in the step's process"
        ) from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
