"""The comparison report a person reads: its plots, and the same sections written as CSV, as a
Markdown page and as one self-contained HTML page (plots embedded)."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # steps run headless
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlpipe.models import evaluation
from mlpipe.models.comparison import FINISHED, Breakdown

PLOTS = "plots"


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    plots: list[str] = field(default_factory=list)  # file names under plots/


def side_by_side(summary: pd.DataFrame, metric: str, direction: str, parts: Breakdown) -> Figure:
    """The models next to each other: the test metric (failed models marked), the score of each
    label or target bucket, and the time to train and to predict one row."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    models = list(summary["model"])
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    ok = summary["status"] == FINISHED
    scores = pd.to_numeric(summary[metric], errors="coerce")
    ax = axes[0]
    ax.bar(models, scores.where(ok, 0).fillna(0), color=[colors[m] for m in models])
    for i, (value, good) in enumerate(zip(scores, ok, strict=True)):
        ax.text(i, value if good else 0, f"{value:.4g}" if good else "failed", ha="center", va="bottom")
    better = "lower" if direction == "minimize" else "higher"
    ax.set(title=f"Test {metric} ({better} is better)", ylabel=metric)
    ax.tick_params(axis="x", rotation=20)

    ax = axes[1]
    table = parts.table
    groups = list(dict.fromkeys(table[parts.part]))
    shown = [m for m in models if m in set(table["model"])]
    width = 0.8 / max(1, len(shown))
    for j, model in enumerate(shown):
        rows = table[table["model"] == model].set_index(parts.part).reindex(groups)
        ax.bar(np.arange(len(groups)) + j * width, rows[parts.value], width, label=model, color=colors[model])
    ax.set_xticks(np.arange(len(groups)) + width * (len(shown) - 1) / 2, groups, rotation=20)
    ax.set(title=f"{parts.value.upper()} by {parts.part}", ylabel=parts.value)
    ax.legend(fontsize="small")

    ax = axes[2]
    finished = summary[ok]
    positions = np.arange(len(finished))
    for offset, column, label in (
        (-0.2, "train_seconds", "train, s"),
        (0.2, "latency_ms", "predict 1 row, ms"),
    ):
        values = pd.to_numeric(finished[column], errors="coerce") if column in finished else np.nan
        ax.bar(positions + offset, pd.Series(values, index=finished.index).fillna(0), 0.4, label=label)
    ax.set_xticks(positions, list(finished["model"]), rotation=20)
    ax.set_yscale("symlog")
    ax.set(title="Time to train and to predict (log scale)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def per_model(task: str, model: str, actual: Any, predicted: Any, target: str) -> tuple[Figure, str]:
    """A classifier's confusion matrix, or a regression's predicted-vs-actual plot, and its file name."""
    if task == "classification":
        figure, name = evaluation.confusion_matrix_plot(actual, predicted), f"confusion_matrix_{model}.png"
    else:
        figure, name = (
            evaluation.predicted_vs_actual(actual, predicted, target),
            f"predicted_vs_actual_{model}.png",
        )
    figure.axes[0].set_title(f"{model}: {figure.axes[0].get_title().lower()}")
    return figure, name


def cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if value is None or value is pd.NA:
        return ""
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines)


def markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        if section.text:
            parts.append(section.text)
        if section.table is not None:
            parts.append(markdown_table(section.table))
        parts += [f"![{name}]({PLOTS}/{name})" for name in section.plots]
    return "\n\n".join(parts) + "\n"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;
margin:1em 0;font-size:90%}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+2){text-align:left}img{max-width:100%;margin:.5em 0}"""


def html_page(title: str, sections: list[Section], folder: Path) -> str:
    """One file: the plots are embedded, so the page reads the same downloaded or in MLflow's UI."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.table is not None:
            parts.append(section.table.map(cell).to_html(index=False, escape=True, border=0))
        for name in section.plots:
            data = base64.b64encode((folder / PLOTS / name).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(folder: Path, title: str, sections: list[Section], tables: dict[str, pd.DataFrame]) -> None:
    """`folder` (which holds plots/ already): every table as CSV, the page as comparison.md and
    comparison.html."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    (folder / "comparison.md").write_text(markdown(title, sections))
    (folder / "comparison.html").write_text(html_page(title, sections, folder))


def save(figure: Figure, folder: Path, name: str) -> str:
    """Save a plot into the report's plots/ (the figure stays open for the run's own log)."""
    (folder / PLOTS).mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / PLOTS / name, dpi=100)
    return name
