"""Models side by side: ranked by the dataset's test metric (ties share a rank, failed models are
listed last with their error), label by label for classifiers (scikit-learn's
classification_report), bucket by bucket of the target for regressions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report

FINISHED, FAILED = "FINISHED", "FAILED"
SIGNIFICANT = 12  # digits two scores must share to tie (absorbs float noise, not real differences)


def ranked(rows: list[dict[str, Any]], metric: str, direction: str) -> pd.DataFrame:
    """One row per model, best first by `metric`: `rank` (ties share the better rank: 1, 1, 3),
    `tied` (the other models with the same score); failed or unscored models last, unranked."""
    table = pd.DataFrame(rows)
    if metric not in table:
        table[metric] = np.nan
    score = pd.to_numeric(table[metric], errors="coerce")
    scored = (table["status"] == FINISHED) & score.notna()
    rounded = score.where(scored).map(lambda v: float(f"{v:.{SIGNIFICANT}g}") if pd.notna(v) else v)
    table.insert(0, "rank", rounded.rank(method="min", ascending=direction == "minimize").astype("Int64"))
    table["tied"] = [
        ", ".join(table.loc[scored & (rounded == value) & (table.index != i), "model"]) if scored[i] else ""
        for i, value in rounded.items()
    ]
    order = table.assign(_unscored=~scored).sort_values(["_unscored", "rank"], kind="stable")
    return order.drop(columns="_unscored").reset_index(drop=True)


def estimator_label(params: Mapping[str, str]) -> str:
    """What a model config trained, in the report's words: its estimator's class (`Ridge`), or
    the image network; from the `model.*` parameters of its train run or its composed config."""
    target = params.get("model.estimator._target_", "")
    if target:
        return target.rpartition(".")[2]
    return "CNN (torch)" if params.get("model.component") == "train_torch" else ""


@dataclass(frozen=True)
class OutOfRange:
    """Predictions of a regression outside the target's range in the training data (a linear
    model's negative prices): values no training row ever had."""

    low: float
    high: float
    below: int
    above: int

    @property
    def count(self) -> int:
        return self.below + self.above

    def describe(self, rows: int, target: str) -> str:
        return (
            f"{self.count} of {rows} predictions outside the training range of {target} "
            f"[{self.low:.4g}, {self.high:.4g}] ({self.below} below, {self.above} above)"
        )


def out_of_range(predicted: Any, trained_on: Any) -> OutOfRange:
    values, known = np.asarray(predicted, dtype=float), np.asarray(trained_on, dtype=float)
    low, high = float(np.nanmin(known)), float(np.nanmax(known))
    return OutOfRange(low, high, int((values < low).sum()), int((values > high).sum()))


def per_label(actual: Any, predictions: Mapping[str, Any]) -> pd.DataFrame:
    """Precision, recall, F1 and support of every label for every model (scikit-learn's
    classification_report); `best` marks the model(s) with the highest F1 on each label."""
    actual = np.asarray(actual)
    labels = sorted({*actual, *(v for p in predictions.values() for v in np.asarray(p))}, key=str)
    rows = []
    for model, predicted in predictions.items():
        report = classification_report(
            actual, np.asarray(predicted), labels=labels, output_dict=True, zero_division=0
        )
        for label in labels:
            scores = report[str(label)]
            rows.append(
                {
                    "label": str(label),
                    "model": model,
                    "precision": scores["precision"],
                    "recall": scores["recall"],
                    "f1": scores["f1-score"],
                    "support": int(scores["support"]),
                }
            )
    table = pd.DataFrame(rows)
    table["best"] = table["f1"] == table.groupby("label")["f1"].transform("max")
    return table


def error_by_bucket(actual: Any, predictions: Mapping[str, Any], buckets: int) -> pd.DataFrame:
    """MAE and mean error (bias: above 0 predicts too high) of every model in each quantile bucket
    of the actual target; `best` marks the model(s) with the lowest MAE in each bucket."""
    actual = np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(actual, np.linspace(0, 1, max(1, buckets) + 1)))
    index = np.clip(np.searchsorted(edges, actual, side="right") - 1, 0, max(0, len(edges) - 2))
    rows = []
    for model, predicted in predictions.items():
        error = np.asarray(predicted, dtype=float) - actual
        for b in range(max(1, len(edges) - 1)):
            inside = index == b
            rows.append(
                {
                    "bucket": f"{edges[b]:.4g} to {edges[min(b + 1, len(edges) - 1)]:.4g}",
                    "model": model,
                    "rows": int(inside.sum()),
                    "mae": float(np.abs(error[inside]).mean()) if inside.any() else np.nan,
                    "mean_error": float(error[inside].mean()) if inside.any() else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    table["best"] = table["mae"] == table.groupby("bucket", sort=False)["mae"].transform("min")
    return table


@dataclass(frozen=True)
class Breakdown:
    """The models' scores part by part: per label, or per bucket of the target."""

    name: str  # per_label or error_by_bucket: the name of its CSV file and MLflow table
    table: pd.DataFrame  # long form: one row per part and model
    part: str  # the column naming the part (label, bucket)
    value: str  # the score shown side by side (f1, mae)
    count: str  # the rows in each part (support, rows)
    title: str

    def wide(self) -> pd.DataFrame:
        """One row per part: its count, one `value` column per model, and the best model(s)."""
        table = self.table
        pivot = table.pivot(index=self.part, columns="model", values=self.value)
        pivot = pivot.reindex(index=table[self.part].unique(), columns=table["model"].unique())
        best = table[table["best"]].groupby(self.part, sort=False)["model"].agg(", ".join)
        counts = table.groupby(self.part, sort=False)[self.count].first()
        out = pd.concat([counts, pivot], axis=1)
        out["best"] = best.reindex(out.index).fillna("")
        return out.rename_axis(self.part).reset_index()


def breakdown(task: str, actual: Any, predictions: Mapping[str, Any], buckets: int, target: str) -> Breakdown:
    """Per label for a classification, per bucket of the target for a regression."""
    if task == "classification":
        table = per_label(actual, predictions)
        return Breakdown("per_label", table, "label", "f1", "support", "Per label (F1; best model per label)")
    table = error_by_bucket(actual, predictions, buckets)
    return Breakdown("error_by_bucket", table, "bucket", "mae", "rows", f"Error by bucket of {target} (MAE)")
