"""What an inference run hands back: the predictions (from the ledger, so a rerun after a crash
gives the same table), the rejected rows with their reasons, the metrics and the log lines."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.data.kinds import NewData
from mlpipe.data.spec import DatasetSpec
from mlpipe.inference.ledger import Ledger
from mlpipe.inference.plan import REASONS, ModelPlan


def predictions_table(
    new: NewData, rows: list[int], plans: list[ModelPlan], ledger: Ledger, spec: DatasetSpec, tolerance: float
) -> tuple[pd.DataFrame, float | None]:
    """Each row with a prediction for its current content from the model version named now, as
    the ledger holds it: side by side when there are several models (the first one's columns
    unprefixed, the others' prefixed with their name)."""
    keys = [new.keys[r] for r in rows]
    hashes = np.asarray([new.hashes[r] for r in rows], dtype=object)
    table = new.key_columns.iloc[rows].reset_index(drop=True)
    table["row"] = [r + 1 for r in rows]  # the data row in the source, counted from 1: joins back
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
    seconds: tuple[float, float],  # of scoring: wall, CPU
    agreement: float | None,
) -> dict[str, float]:
    """The first model's counts as `rows_*`; with several models, each one's as `rows_*.<name>`.
    They add up: rows_in = new + changed + rescored + skipped + refused (before scoring)
    = scored + rejected (refused included) + skipped."""

    def counts(p: ModelPlan) -> dict[str, float]:
        return {
            **{f"rows_{reason}": p.counts[reason] for reason in REASONS},
            "rows_refused": refused,
            "rows_rejected": refused + p.rejected,
            "rows_scored": p.scored,
            "rows_gone": len(p.gone),
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
        metrics["scoring_seconds"], metrics["scoring_cpu_seconds"] = seconds
        metrics["rows_per_second"] = sum(p.scored + p.rejected for p in plans) / max(seconds[0], 1e-9)
    return metrics


def summary(rows_in: int, plans: list[ModelPlan], refused: dict[int, str], forget_gone: bool) -> list[str]:
    """A line per model whose counts are the metrics' and add up to the rows in, twice over: by
    what the ledger said of each row, and by what became of it."""
    lines = []
    if refused:
        first = next(iter(refused.items()))
        lines.append(f"{len(refused)} row(s) refused before scoring (data row {first[0] + 1}: {first[1]})")
    for p in plans:
        c = p.counts
        model = f"{p.model.name} ({p.model.version})"
        head = (
            f"{model}: nothing to score: {rows_in} rows in" if not p.todo else f"{model}: {rows_in} rows in"
        )
        gone = f"{len(p.gone)} row(s) gone from the source since scored " + (
            "(deleted from the ledger: inference.forget_gone)" if forget_gone else "(kept in the ledger)"
        )
        lines.append(
            f"{head}: {c['new']} new, {c['changed']} changed, {c['rescored']} rescored (model version "
            f"changed or inference.full), {c['skipped']} unchanged, {len(refused)} refused before "
            f"scoring (no key or a repeated key); {p.scored} scored, {len(refused) + p.rejected} "
            f"rejected ({len(refused)} before scoring, {p.rejected} by the model), {c['skipped']} "
            f"skipped; {gone}"
        )
    return lines
