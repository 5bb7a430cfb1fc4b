"""compare: trains and tests each model config of `compare.models` (and the `prod` model with
`compare.include_prod`) on the same `trainval_data` and `test_data` versions, each through the
`train` and `test_model` steps as a pipeline run nested under one run named `comparison` (the step
cache reuses what already ran); ranks them by the dataset's test metric, failed models shown with
their error; reports per label (classification) or per target bucket (regression), with a confusion
matrix or predicted-vs-actual plot per model, as CSV, Markdown and HTML; runs only when named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.pipeline.contract import StepContract, StepParams, hydra_overrides, param, reads, writes
from mlpipe.pipeline.step import Step, run_script, step_run

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.models.comparison import Breakdown
    from mlpipe.models.scoring import Prediction
    from mlpipe.pipeline.comparison_jobs import JobResult

RUN_NAME = "comparison"


@dataclass(frozen=True)
class Params(StepParams):
    models: list[str] = param("Model configs (conf/model/<name>.yaml) to train and test on the same data")
    include_prod: bool = param("Also test the current prod model (model_export:prod) on the same test data")
    buckets: int = param("Regression: how many quantile buckets of the target the errors are shown by")
    trainval_artifact: str = reads("trainval_data")
    test_artifact: str = reads("test_data")
    overrides: list[str] = hydra_overrides()
    report_artifact: str = writes(
        "comparison_report", "Name of the report artifact (CSV tables, Markdown and HTML page, plots)"
    )


# Never train on data that failed its checks; with promote selected too, compare with its prod.
# Never reused: it starts the runs of other steps, and `prod` can move between two comparisons.
CONTRACT = StepContract(
    "compare", Params, __doc__, after=("data_check", "promote"), opt_in=True, side_effects=True
)


def planned_params(cfg: Any) -> dict[str, str]:
    """The `model.*` parameters a job's train run would log that name what it trains."""
    from omegaconf import OmegaConf

    names = ("model.estimator._target_", "model.component")
    try:
        return {n: str(OmegaConf.select(cfg, n, default="")) for n in names}
    except Exception:  # a config that does not resolve: its row says why
        return {}


def model_row(step: Step, result: JobResult, test: Any) -> tuple[dict, Prediction | None]:
    """A model's row of the summary, and its predictions on the test data (None when it failed):
    the metrics its test_model run logged, the data versions its runs read, its training time, and
    its prediction latency measured here (every model in the same process, one after another)."""
    import math

    from mlpipe.models import scoring
    from mlpipe.models.comparison import FAILED, FINISHED, estimator_label
    from mlpipe.pipeline.cache import TAG_REUSED
    from mlpipe.pipeline.comparison_jobs import MODEL_STEPS, PROD

    spec = step.spec
    row: dict[str, Any] = {
        "model": result.job.name,
        "estimator": "",
        "status": FINISHED if result.ok else FAILED,
    }
    if result.job.cfg is not None and result.job.name != PROD:  # what it was to train, if it failed
        row["estimator"] = estimator_label(planned_params(result.job.cfg))
    if not result.ok or "test_model" not in result.step_runs:
        row["error"] = result.error or "no test_model run"
        row["status"] = FAILED
        return row, None
    tested = result.step_runs["test_model"]
    read = step.store.inputs_of(tested)
    export = step.store.version_with("model_export", read["model_export"])
    trained = result.step_runs.get("train") or step.store.producers(export)[0]
    trained_on = step.store.inputs_of(trained).get("trainval_data")
    row["estimator"] = estimator_label(trained.data.params)  # what was trained, prod's too
    _, folder = step.use(export.ref)
    model = scoring.load(folder)
    prediction, scores = scoring.evaluate(model, test, spec)
    logged = tested.data.metrics
    for name, value in scores.items():
        if name in logged and not math.isclose(value, logged[name], rel_tol=1e-9, abs_tol=1e-12):
            step.log.warning(
                "%s: %s is %.6g here but %.6g in test_model's run", result.job.name, name, value, logged[name]
            )
    row.update({name: logged.get(name, value) for name, value in scores.items()})
    validation = spec.metrics.validation
    row[validation] = trained.data.metrics.get(validation)
    row["train_seconds"] = trained.data.metrics.get("train_seconds")
    row.update(scoring.latency(model, test, spec))
    row.update(
        {
            "trainval_data": step.store.version_with("trainval_data", trained_on).ref if trained_on else "",
            "test_data": step.store.version_with("test_data", read["test_data"]).ref,
            "model_export": export.ref,
            "reused": ", ".join(
                s
                for s in MODEL_STEPS
                if s in result.step_runs and TAG_REUSED in result.step_runs[s].data.tags
            ),
        }
    )
    return row, prediction


SUMMARY_COLUMNS = ["rank", "model", "estimator", "status", "tied"]  # then the test metrics, the rest
RECORD_COLUMNS = ["model", "trainval_data", "test_data", "model_export", "pipeline_run", "skipped_overrides"]


def run_models(step: Step, params: Params, versions: dict, test: Any) -> tuple[list, dict]:
    """Every model's job, one after another (so their training times and latencies are measured
    under the same load): rows of the summary, and the predictions of those that finished."""
    import mlflow

    from mlpipe.pipeline import comparison_jobs

    jobs = comparison_jobs.plan(
        params.models,
        params.overrides,
        {v.name: v.ref for v in versions.values()},
        step.spec.config,
        mlflow.get_experiment(step.store.experiment_id).name,
        include_prod=params.include_prod,
        prod_exists=step.store.find(f"model_export:{comparison_jobs.PROD}") is not None,
    )
    step.log.info(
        "comparing %s on %s (train) and %s (test), one after another",
        ", ".join(j.name for j in jobs),
        versions["trainval_data"].ref,
        versions["test_data"].ref,
    )
    rows, predictions = [], {}
    for job in jobs:
        result = comparison_jobs.run(job, step.run_id, step.workdir / "jobs")
        row, prediction = model_row(step, result, test)
        if job.name != comparison_jobs.PROD:  # what a model that failed was given
            row.setdefault("trainval_data", versions["trainval_data"].ref)
            row.setdefault("test_data", versions["test_data"].ref)
        row.update(pipeline_run=result.pipeline_run_id or "", skipped_overrides=" ".join(job.skipped))
        rows.append(row)
        if prediction is not None:
            predictions[job.name] = prediction.values
    return rows, predictions


def write_report(
    step: Step,
    folder: Path,
    summary: pd.DataFrame,
    parts: Breakdown,
    predictions: dict,
    test: Any,
    notes: list[str],
) -> list[str]:
    """The report's plots (logged to the run too), tables and pages in `folder`; the best model(s)."""
    from mlpipe.models import comparison_report
    from mlpipe.models.comparison import FINISHED
    from mlpipe.models.comparison_report import Section

    spec = step.spec
    metric, direction = spec.metrics.test, spec.metrics.direction
    figures = [(comparison_report.side_by_side(summary, metric, direction, parts), "side_by_side.png")]
    actual = spec.kind.target(test, spec)
    figures += [
        comparison_report.per_model(spec.task, name, actual, predicted, spec.target)
        for name, predicted in predictions.items()
    ]
    plots = []
    for figure, name in figures:
        plots.append(comparison_report.save(figure, folder, name))
        step.log_figure(figure, name)
    best = summary.loc[summary["rank"] == 1, "model"].tolist()
    failed = summary.loc[summary["status"] != FINISHED, "model"].tolist()
    versions = summary.loc[
        summary["model"].isin(predictions), ["trainval_data", "test_data"]
    ].drop_duplicates()
    data = "; ".join(f"trained on {a}, tested on {b}" for a, b in versions.itertuples(index=False))
    text = (
        f"{spec.name}: {data} ({spec.kind.size(test)} rows). Ranked by test {metric} ({direction}); "
        f"best: {', '.join(best)}{' (tied)' if len(best) > 1 else ''}"
        + (f"; failed: {', '.join(failed)}." if failed else ".")
        + "".join(f" {note}." for note in notes)
    )
    measured = [c for c in summary.columns if c not in SUMMARY_COLUMNS + RECORD_COLUMNS]
    sections = [
        Section("Models", text, summary[SUMMARY_COLUMNS + measured]),
        Section(parts.title, table=parts.wide()),
        Section("Side by side", plots=plots[:1]),
        Section("Per model", plots=plots[1:]),
        Section("Data versions, model exports and runs", table=summary[RECORD_COLUMNS]),
    ]
    title = f"Comparison on {spec.name}: {', '.join(summary['model'])}"
    comparison_report.write(folder, title, sections, {"comparison": summary, parts.name: parts.table})
    return best


def run(params: Params) -> None:
    import mlflow
    import pandas

    from mlpipe.errors import StepError
    from mlpipe.models import comparison
    from mlpipe.pipeline.sweep import format_table

    with step_run(CONTRACT, params) as step:
        mlflow.MlflowClient().update_run(step.run_id, name=RUN_NAME)
        step.wandb.rename(RUN_NAME)
        spec = step.spec
        trainval, trainval_data = step.read_data(params.trainval_artifact)
        tested, test = step.read_data(params.test_artifact)
        rows, predictions = run_models(step, params, {v.name: v for v in (trainval, tested)}, test)
        if not predictions:
            reasons = "; ".join(f"{r['model']}: {r.get('error', '')}" for r in rows)
            raise StepError(f"compare: every model failed; {reasons}")
        notes = []
        if spec.task == "regression":  # values no training row had (a linear model's negative prices)
            known = spec.kind.target(trainval_data, spec)
            for row in rows:
                if row["model"] in predictions:
                    found = comparison.out_of_range(predictions[row["model"]], known)
                    row["outside_train_range"] = found.count
                    if found.count:
                        notes.append(f"{row['model']}: {found.describe(spec.kind.size(test), spec.target)}")
                        step.log.warning("%s", notes[-1])
        metric = spec.metrics.test
        summary = comparison.ranked(rows, metric, spec.metrics.direction)
        summary = summary[[*SUMMARY_COLUMNS, *(c for c in summary.columns if c not in SUMMARY_COLUMNS)]]
        actual = spec.kind.target(test, spec)
        parts = comparison.breakdown(spec.task, actual, predictions, params.buckets, spec.target)
        folder = step.workdir / "out" / params.report_artifact
        best = write_report(step, folder, summary, parts, predictions, test, notes)

        mlflow.log_table(summary, "comparison.json")
        mlflow.log_table(parts.table, f"{parts.name}.json")
        step.wandb.log_table("comparison", summary)
        step.wandb.log_table(parts.name, parts.table)
        finished = summary[summary["status"] == comparison.FINISHED]
        scores = {
            f"{row.model}.{name}": float(getattr(row, name))
            for row in finished.itertuples()
            for name in (metric, spec.metrics.validation, "outside_train_range")
            if name in finished and pandas.notna(getattr(row, name))
        }
        step.log_metrics({**scores, "models": len(summary), "failed_models": len(summary) - len(finished)})
        mlflow.set_tags({"best_model": ", ".join(best), "metric": metric})
        step.log_artifact(
            params.report_artifact,
            folder,
            type="comparison_report",
            description=f"{len(summary)} models compared on {spec.name} by test {metric}",
            metadata={"models": list(summary["model"]), "best": best, "metric": metric},
        )
        columns = ["rank", "model", "estimator", "status", metric, "outside_train_range", "train_seconds"]
        columns = [c for c in [*columns, "latency_ms", "reused", "error"] if c in summary]
        shown = summary.reindex(columns=columns).astype(object).fillna("").to_dict("records")
        step.log.info("comparison by test %s:\n%s", metric, format_table(shown, columns))
        step.log.info("report: %s/comparison.html", mlflow.get_artifact_uri(params.report_artifact))


if __name__ == "__main__":
    run_script(CONTRACT, run)
