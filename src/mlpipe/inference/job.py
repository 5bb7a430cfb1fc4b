"""One inference run: which rows each model must score (`plan_all`), then the batches
(`score_new_data`, with `workers`: in this process, or in parallel processes that each hold the
models once), a ledger commit per batch as it comes back, and the outputs (`outputs`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from mlpipe.data.kinds import NewData
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.inference import outputs, scorer
from mlpipe.inference.ledger import Ledger, Scored
from mlpipe.inference.models import Model
from mlpipe.inference.plan import ModelPlan, batches, plan
from mlpipe.inference.workers import cpu_seconds, in_process, load_here, run_batches

WHERE = "inference"


@dataclass(frozen=True)
class Settings:
    full: bool  # score every row again
    batch_size: int
    workers: int  # scoring processes; 1: this process
    agreement_tolerance: float  # regression: predictions within this fraction agree
    forget_gone: bool = False  # delete the ledger rows of keys the source no longer has


@dataclass(frozen=True)
class Result:
    predictions: pd.DataFrame
    rejected: pd.DataFrame
    metrics: dict[str, float]
    lines: list[str]  # what happened, for the log


def plan_all(new: NewData, models: list[Model], ledger: Ledger, dataset: str, full: bool) -> list[ModelPlan]:
    """What each model must score of `new` (the rows refused before scoring left out), and how many
    keys the ledger holds that the source no longer has."""
    rows = scorable(new)
    current = set(new.keys)
    plans = [plan(new, rows, m, ledger, dataset, full) for m in models]
    for model_plan in plans:
        model_plan.gone = sorted(ledger.keys(dataset, model_plan.model.name) - current)
    return plans


def scorable(new: NewData) -> list[int]:
    return [r for r in range(len(new)) if r not in new.refused]


def to_score(plans: list[ModelPlan]) -> list[int]:
    """The source rows some model will score this run, in order."""
    return sorted({r for p in plans for r in p.todo})


def score_new_data(
    new: NewData,
    spec: DatasetSpec,
    plans: list[ModelPlan],
    fetch: Callable[[Model], str],
    ledger: Ledger,
    settings: Settings,
    run_id: str,
    log: logging.Logger,
) -> Result:
    """Score what `plans` say of `new` (`fetch` gives a model's local folder: asked only for the
    models with rows to score); with `forget_gone`, the keys gone from the source leave the ledger."""
    rows = scorable(new)
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
    # scoring: the batches and their commits, the models loaded (wall and CPU, workers included)
    started, cpu = datetime.now(UTC), cpu_seconds()
    if tasks:
        log.info(
            "scoring %s in %d batch(es) of up to %d rows, %s",
            ", ".join(f"{len(p.todo)} rows with {p.model.name}" for p in plans),
            len(tasks),
            settings.batch_size,
            "in this process" if in_process(settings.workers, tasks) else f"{settings.workers} workers",
        )
        run_batches(tasks, new, spec, folders, settings.workers, done)
    seconds, cpu = (datetime.now(UTC) - started).total_seconds(), cpu_seconds() - cpu
    if settings.forget_gone:
        for model_plan in plans:
            ledger.forget(spec.name, model_plan.model.name, model_plan.gone)
    predictions, agreement = outputs.predictions_table(
        new, rows, plans, ledger, spec, settings.agreement_tolerance
    )
    metrics = outputs.measurements(len(new), len(new.refused), plans, latencies, (seconds, cpu), agreement)
    return Result(
        predictions,
        outputs.rejected_table(new, rejected),
        metrics,
        outputs.summary(len(new), plans, new.refused, settings.forget_gone),
    )
