"""Metrics, per-label tables and plots for regression and classification."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # steps run headless
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    return {
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }


def classification_metrics(
    y_true: Any, y_pred: Any, proba: np.ndarray | None = None, classes: list[Any] | None = None
) -> dict[str, float]:
    """Accuracy and macro F1; ROC AUC (one-vs-rest) when class probabilities are known."""
    result = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro")),
    }
    if proba is not None and classes is not None and len(set(y_true)) > 1:
        if proba.shape[1] == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(y_true, proba[:, 1], labels=classes))
        else:
            result["roc_auc"] = float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    return result


def per_label_table(y_true: Any, y_pred: Any) -> pd.DataFrame:
    """F1 and accuracy (recall within the label) per label, worst F1 first."""
    y_true, y_pred = pd.Series(np.asarray(y_true)), pd.Series(np.asarray(y_pred))
    labels = sorted(set(y_true) | set(y_pred), key=str)
    f1 = metrics.f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    rows = []
    for label, score in zip(labels, f1, strict=True):
        mask = y_true == label
        rows.append(
            {
                "label": str(label),
                "support": int(mask.sum()),
                "f1": float(score),
                "accuracy": float((y_pred[mask] == label).mean()) if mask.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows).sort_values("f1", kind="stable").reset_index(drop=True)


def predicted_vs_actual(y_true: Any, y_pred: Any, target: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(y_true, y_pred, s=6, alpha=0.4)
    low, high = float(np.min(y_true)), float(np.max(y_true))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect prediction")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual")
    ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix_plot(y_true: Any, y_pred: Any) -> Figure:
    labels = sorted(set(np.asarray(y_true)) | set(np.asarray(y_pred)), key=str)
    size = max(5, 0.5 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    metrics.ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, ax=ax, colorbar=False, xticks_rotation=45
    )
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def feature_importance_plot(names: list[str], importances: np.ndarray, top: int = 25) -> Figure:
    order = np.argsort(importances)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(order))))
    ax.barh([names[i] for i in order], importances[order])
    ax.set(xlabel="importance", title=f"Feature importance (top {len(order)})")
    fig.tight_layout()
    return fig


def line_plot(series: dict[str, list[float]], xlabel: str, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=label)
    ax.set(xlabel=xlabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig
