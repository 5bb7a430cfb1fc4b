"""One inference run: which rows each model must score (against the ledger), the batches (in this
process, or in parallel worker processes that each load the models once), a ledger commit per
batch as it comes back, and the outputs: the predictions of every row the models hold a prediction
for (from the ledger, so a rerun after a crash gives the same table), the rejected rows with their
reasons, and the metrics."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.data.kinds import NewData
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.inference import scorer
from mlpipe.inference.ledger import Ledger, Scored
from mlpipe.inference.models import Model

WHERE = "inference"
REASONS = ("new", "changed", "rescored", "skipped")
IN_FLIGHT = 2  # batches queued per worker: one running, one ready


@dataclass(frozen=True)
class Settings:
    full: bool  # score every row again
    batch_size: int
    workers: int  # scoring processes; 1: this process
    agreement_tolerance: float  # regression: predictions within this fraction agree


@dataclass
class ModelPlan:
    model: Model
    todo: list[int] = field(default_factory=list)  # source rows to score, in order
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    scored: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Result:
    predictions: pd.DataFrame
    rejected: pd.DataFrame
    metrics: dict[str, float]
    lines: list[str]  # what happened, for the log


def plan(new: NewData, rows: list[int], model: Model, ledger: Ledger, dataset: str, full: bool) -> ModelPlan:
    """Which rows `model` must score: new keys, changed content, another model version (or all)."""
    known = ledger.known(dataset, model.name, [new.keys[r] for r in rows])
    result = ModelPlan(model)
    for row in rows:
        entry = known.get(new.keys[row])
        if entry is None:
            reason = "new"
        elif entry[0] != new.hashes[row]:
            reason = "changed"
        elif entry[1] != model.version or full:
            reason = "rescored"
        else:
            reason = "skipped"
        result.counts[reason] += 1
        if reason != "skipped":
            result.todo.append(row)
    return result


def batches(plans: list[ModelPlan], size: int) -> list[tuple[str, list[int]]]:
    return [(p.model.name, p.todo[i : i + size]) for p in plans for i in range(0, len(p.todo), size)]


def start_method() -> str:
    """Fork where there is one: a worker starts at once with the models this process loaded.
    Workers cap their math threads after the fork (`scorer.limit_threads`), as PyTorch's own
    data-loader workers do, so no thread pool of the parent is used in them."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def in_process(workers: int, tasks: list[tuple[str, list[int]]]) -> bool:
    return workers <= 1 or len(tasks) <= 1


def load_here(
    folders: dict[str, str], spec: DatasetSpec, workers: int, tasks: list[tuple[str, list[int]]]
) -> None:
    """Load the models in this process when it scores, or when its workers fork from it."""
    if in_process(workers, tasks) or start_method() == "fork":
        scorer.start(folders, spec)


def run_batches(
    tasks: list[tuple[str, list[int]]],
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


def score_new_data(
    new: NewData,
    spec: DatasetSpec,
    models: list[Model],
    fetch: Callable[[Model], str],
    ledger: Ledger,
    settings: Settings,
    run_id: str,
    log: logging.Logger,
) -> Result:
    """Score what `models` have not scored yet of `new` (`fetch` gives a model's local folder:
    asked only for the models with rows to score)."""
    rows = [r for r in range(len(new)) if r not in new.refused]
    plans = [plan(new, rows, m, ledger, spec.name, settings.full) for m in models]
    folders = {p.model.name: fetch(p.model) for p in plans if p.todo}
    by_name = {p.model.name: p for p in plans}
    tasks = batches(plans, settings.batch_size)
    rejected: list[tuple[int, str, str]] = [(r, "", reason) for r, reason in new.refused.items()]
    latencies: list[float] = []

    def done(result: scorer.BatchResult) -> None:
        model_plan = by_name[result.model]
        if result.refused_alike:
            raise StepError(
                f"{WHERE}: model '{result.model}' ({model_plan.model.version}) refuses every row tried "
                f"({scorer.SAMPLE} across a batch) alike: {result.refused_alike}"
            )
        scored = [
            Scored(new.keys[r], new.hashes[r], p, q)
            for r, p, q in zip(result.rows, result.predictions, result.probabilities, strict=True)
        ]
        ledger.record(spec.name, result.model, model_plan.model.version, run_id, scored, datetime.now(UTC))
        model_plan.scored += len(scored)
        model_plan.rejected += len(result.rejected)
        rejected.extend((r, result.model, reason) for r, reason in result.rejected.items())
        latencies.append(result.seconds)
        if len(latencies) % max(1, len(tasks) // 10) == 0 or len(latencies) == len(tasks):
            log.info("batch %d of %d done (%s)", len(latencies), len(tasks), result.model)

    if tasks:
        load_here(folders, spec, settings.workers, tasks)
    started = datetime.now(UTC)  # scoring: the batches and their commits, the models loaded
    if tasks:
        log.info(
            "scoring %s in %d batch(es) of up to %d rows, %s",
            ", ".join(f"{len(p.todo)} rows with {p.model.name}" for p in plans),
            len(tasks),
            settings.batch_size,
            "in this process" if in_process(settings.workers, tasks) else f"{settings.workers} workers",
        )
        run_batches(tasks, new, spec, folders, settings.workers, done)
    seconds = (datetime.now(UTC) - started).total_seconds()
    predictions, agreement = predictions_table(new, rows, plans, ledger, spec, settings.agreement_tolerance)
    metrics = measurements(len(new), len(new.refused), plans, latencies, seconds, agreement)
    return Result(predictions, rejected_table(new, rejected), metrics, summary(len(new), plans, new.refused))


# -- outputs ---------------------------------------------------------------------------------
def predictions_table(
    new: NewData, rows: list[int], plans: list[ModelPlan], ledger: Ledger, spec: DatasetSpec, tolerance: float
) -> tuple[pd.DataFrame, float | None]:
    """Each row with a prediction for its current content from the model version named now, as
    the ledger holds it: side by side when there are several models (the first one's columns
    unprefixed, the others' prefixed with their name)."""
    keys = [new.keys[r] for r in rows]
    hashes = np.asarray([new.hashes[r] for r in rows], dtype=object)
    table = new.key_columns.iloc[rows].reset_index(drop=True)
    valid_any = np.zeros(len(rows), dtype=bool)
    predictions: list[pd.Series] = []
    for number, model_plan in enumerate(plans):
        model = model_plan.model
        prefix = "" if number == 0 else f"{model.name}."
        entries = ledger.entries(spec.name, model.name, keys).set_index("row_key").reindex(keys)
        valid = (entries["content_hash"].to_numpy() == hashes) & (
            entries["model_version"].to_numpy() == model.version
        )
        valid_any |= valid
        prediction = entries["prediction"].where(valid).reset_index(drop=True)
        prediction = prediction.astype(float) if spec.task == "regression" else prediction.astype(object)
        predictions.append(prediction.where(pd.Series(valid)))
        table[f"{prefix}prediction"] = prediction
        for column, values in probability_columns(entries["probabilities"].where(valid)).items():
            table[f"{prefix}probability.{column}"] = values
        table[f"{prefix}model"] = np.where(valid, model.name, None)
        table[f"{prefix}model_version"] = np.where(valid, model.version, None)
        table[f"{prefix}scored_at"] = entries["last_scored"].where(valid).reset_index(drop=True)
    agreement = None
    if len(plans) > 1:
        agree = agreeing(predictions, spec.task == "regression", tolerance)
        table["models_agree"] = agree
        comparable = agree.notna()
        agreement = float(agree[comparable].astype(bool).mean()) if comparable.any() else None
    return table[valid_any].reset_index(drop=True), agreement


def probability_columns(texts: pd.Series) -> dict[str, list[float]]:
    """One column per class, in the model's order, from the ledger's JSON."""
    parsed = [json.loads(t) if isinstance(t, str) else None for t in texts]
    classes = next((list(p) for p in parsed if p), [])
    return {c: [p[c] if p else np.nan for p in parsed] for c in classes}


def agreeing(predictions: list[pd.Series], regression: bool, tolerance: float) -> pd.Series:
    """Whether every model gives the same answer (regression: within `tolerance` of the first
    model's, as a fraction); missing where a model has no prediction."""
    first = predictions[0]
    agree = pd.Series(True, index=first.index, dtype=object)
    for other in predictions[1:]:
        if regression:
            same = np.isclose(other.astype(float), first.astype(float), rtol=tolerance, atol=0.0)
        else:
            same = (other == first).to_numpy()
        agree = agree & pd.Series(same, index=first.index)
    missing = pd.concat(predictions, axis=1).isna().any(axis=1)
    return agree.astype(object).where(~missing, None)


def rejected_table(new: NewData, rejected: list[tuple[int, str, str]]) -> pd.DataFrame:
    rejected = sorted(rejected)
    rows = [r for r, _, _ in rejected]
    table = new.key_columns.iloc[rows].reset_index(drop=True)
    table["row"] = [r + 1 for r in rows]  # the data row in the source, counted from 1
    table["model"] = [m for _, m, _ in rejected]  # empty: refused before any model saw it
    table["reason"] = [reason for _, _, reason in rejected]
    return table


def measurements(
    rows_in: int,
    refused: int,
    plans: list[ModelPlan],
    latencies: list[float],
    seconds: float,
    agreement: float | None,
) -> dict[str, float]:
    """The first model's counts as `rows_*`; with several models, each one's as `rows_*.<name>`."""

    def counts(p: ModelPlan) -> dict[str, float]:
        return {
            **{f"rows_{reason}": p.counts[reason] for reason in REASONS},
            "rows_rejected": refused + p.rejected,
            "rows_scored": p.scored,
        }

    metrics: dict[str, Any] = {"rows_in": rows_in, **counts(plans[0])}
    if len(plans) > 1:
        for p in plans:
            metrics.update({f"{k}.{p.model.name}": v for k, v in counts(p).items()})
    if agreement is not None:
        metrics["agreement_rate"] = agreement
    if latencies:
        metrics["batches"] = len(latencies)
        metrics["batch_latency_median_s"] = float(np.median(latencies))
        metrics["batch_latency_p95_s"] = float(np.percentile(latencies, 95))
        metrics["scoring_seconds"] = seconds
        metrics["rows_per_second"] = sum(p.scored + p.rejected for p in plans) / max(seconds, 1e-9)
    return metrics


def summary(rows_in: int, plans: list[ModelPlan], refused: dict[int, str]) -> list[str]:
    lines = []
    if refused:
        first = next(iter(refused.items()))
        lines.append(f"{len(refused)} row(s) refused before scoring (data row {first[0] + 1}: {first[1]})")
    for p in plans:
        model = f"{p.model.name} ({p.model.version})"
        if not p.todo:
            lines.append(
                f"{model}: nothing to score: all {p.counts['skipped']} rows were scored before, "
                "from the same content, by this version"
            )
            continue
        c = p.counts
        lines.append(
            f"{model}: {rows_in} rows in: {c['new']} new, {c['changed']} changed, {c['rescored']} "
            f"rescored (model version changed or inference.full), {c['skipped']} unchanged and skipped; "
            f"{p.scored} scored, {p.rejected} rejected"
        )
    return lines
