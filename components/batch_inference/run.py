"""inference: scores new data (a CSV or Parquet file, an image folder or archive) with the `prod`
model, or several side by side with their agreement rate, through the pyfunc flavor: only the rows
that are new or changed since the ledger (a database table) last saw them, or all when the model
version changed; batches in parallel, each committed to the ledger as it is done, so a killed run
resumes; logs `predictions` and `rejected_rows` (with the reasons); runs only when named, never
reused from the cache, never moves `prod`.

The ledger records, for each dataset, model and row key, from which content (a hash of the row's
model input) and by which model version the row was scored, when first and last, and the
prediction. Registered models are read, never moved; nothing is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpipe.data.drift import DriftThresholds
from mlpipe.pipeline.contract import ProjectPath, StepContract, StepParams, param, writes
from mlpipe.pipeline.step import Step, run_script, step_run

if TYPE_CHECKING:
    from mlpipe.data.kinds import NewData
    from mlpipe.inference.models import Model


@dataclass(frozen=True)
class Params(StepParams, DriftThresholds):
    source: ProjectPath = param(
        "The new data: a path (from the project root) or URL of a CSV or Parquet file, or an image "
        "folder or archive (any source download accepts)"
    )
    models: list[str] = param(
        "Models to score with, side by side: aliases or version numbers of model_name (prod, "
        "challenger, 3), models:/<name>@<alias>, models:/<name>/<version> or model_export:vN"
    )
    model_name: str = param("The registered model that aliases and version numbers in `models` belong to")
    key: list[str] | None = param(
        "Columns that identify a row (null: the dataset's id columns; images: the file's path)"
    )
    full: bool = param("Score every row again, whatever the ledger says")
    ledger_uri: str | None = param(
        "SQLAlchemy URL of the ledger database "
        "(null: $MLPIPE_DATABASE_URL, else sqlite:///<results root>/inference_ledger.db)"
    )
    batch_size: int = param("Rows per batch: the unit of work of a worker and of a ledger commit")
    workers: int = param("Scoring processes, each loading the models once (1: the step's own process)")
    agreement_tolerance: float = param(
        "With several regression models: predictions within this fraction of the first model's agree"
    )
    forget_gone: bool = param(
        "Delete the ledger rows of keys the source no longer has (false: keep them, the record of "
        "what was scored)"
    )
    on_busy: str = param(
        "When another run scores this dataset with one of these models on this ledger: wait until "
        "it ends, or skip (end at once, scoring nothing)"
    )
    drift: str = param(
        "Drift of the rows to score from drift_reference (data_check's tests and thresholds): warn "
        "(log it), fail (stop before scoring) or off"
    )
    drift_reference: str = param(
        "The data the model learned from, as data_check keeps it (none found: no drift tests)"
    )
    predictions_artifact: str = writes("predictions")
    rejected_artifact: str = writes("rejected_rows")


TAG_SKIPPED = "mlpipe.skipped"  # why the run scored nothing and logged no outputs

# With promote selected too, score with what promote left in prod.
CONTRACT = StepContract("inference", Params, __doc__, after=("promote",), opt_in=True, side_effects=True)


def check(params: Params, where: str) -> None:
    from mlpipe.errors import StepError
    from mlpipe.inference.drift_check import MODES
    from mlpipe.inference.lock import ON_BUSY

    if params.batch_size < 1 or params.workers < 1:
        raise StepError(
            f"{where}: batch_size is {params.batch_size} and workers {params.workers}; expected at least 1"
        )
    if not params.models:
        raise StepError(f"{where}: models is empty; expected at least one model (prod)")
    if len(set(params.models)) != len(params.models):
        raise StepError(f"{where}: models {params.models} names a model twice; expected each once")
    for name, value, allowed in (("on_busy", params.on_busy, ON_BUSY), ("drift", params.drift, MODES)):
        if value not in allowed:
            raise StepError(f"{where}: {name} is '{value}'; expected one of {', '.join(allowed)}")


def resolve_models(step: Step, params: Params) -> list[Model]:
    """Every model resolved to one version; lineage records the exports used."""
    from mlflow.tracking import MlflowClient

    from mlpipe.inference import models

    client = MlflowClient()
    chosen = [models.resolve(r, params.model_name, step.store, client, step.name) for r in params.models]
    for model in chosen:
        if model.artifact is not None:
            step.store.record_use(step.run_id, model.artifact)
        step.log.info("model %s: %s", model.name, model.version)
    return chosen


def fetcher(step: Step) -> Callable[[Model], str]:
    """A model's files in a local folder, fetched once, only when it has rows to score."""
    from mlpipe.inference import models

    fetched: dict[str, str] = {}

    def fetch(model: Model) -> str:
        if model.uri not in fetched:
            fetched[model.uri] = str(models.download(model, step.workdir / "models" / str(len(fetched))))
        return fetched[model.uri]

    return fetch


def check_drift(step: Step, params: Params, new: NewData, rows: list[int]) -> None:
    """The dataset's drift tests on the rows about to be scored, against the reference data:
    metrics, a warning, and with drift=fail an error before anything is scored."""
    import dataclasses

    import numpy as np

    from mlpipe.errors import StepError
    from mlpipe.inference import drift_check

    if params.drift == "off":
        return
    if not rows:
        step.log.info("drift: nothing to score, not measured")
        return
    scored = step.spec.kind.new_summary(new, np.asarray(rows), step.spec)
    if scored is None:
        step.log.info(
            "drift: not measured on new %s data (only on what data_check sees)", step.spec.kind.name
        )
        return
    if step.store.find(params.drift_reference) is None:
        step.log.info(
            "drift: no %s yet (data_check sets it on its first run): the drift tests are skipped",
            params.drift_reference,
        )
        return
    version, path = step.use(params.drift_reference)
    reference = step.spec.kind.read(path, step.context(f"{version.ref} ({path.name})"))
    limits = DriftThresholds(**{f.name: getattr(params, f.name) for f in dataclasses.fields(DriftThresholds)})
    report = drift_check.compare(step.spec.kind.summary(reference, step.spec), scored, step.spec, limits)
    step.log_metrics(report.metrics)
    what = f"the {len(rows)} rows to score against {version.ref} ({params.drift_reference})"
    if report.left_out:
        step.log.info("drift: the source has no %s: not compared", ", ".join(report.left_out))
    if not report.drifted:
        step.log.info("drift: none found in %s", what)
        return
    if params.drift == "fail":
        raise StepError(
            f"{step.name}: drift in {what}: {'; '.join(report.drifted)}; nothing scored "
            "(inference.drift=warn scores them anyway)"
        )
    step.log.warning(
        "drift in %s: %s; scored anyway (inference.drift=fail stops)", what, "; ".join(report.drifted)
    )


def run(params: Params) -> None:
    import mlflow

    from mlpipe.data.tables import write_table
    from mlpipe.inference import job, ledger, lock

    with step_run(CONTRACT, params) as step:
        check(params, step.name)
        spec = step.spec
        chosen = resolve_models(step, params)
        new = spec.kind.read_new(params.source, step.workdir / "source", spec, params.key, step.name)
        book = ledger.Ledger(params.ledger_uri or ledger.default_uri(), step.name)
        names = [m.name for m in chosen]
        try:
            with lock.held(book, spec.name, names, step.run_id, params.on_busy, step.log) as ours:
                if not ours:
                    mlflow.set_tag(TAG_SKIPPED, "another run held the ledger (inference.on_busy=skip)")
                    return
                plans = job.plan_all(new, chosen, book, spec.name, params.full)
                check_drift(step, params, new, job.to_score(plans))
                settings = job.Settings(
                    params.full,
                    params.batch_size,
                    params.workers,
                    params.agreement_tolerance,
                    params.forget_gone,
                )
                result = job.score_new_data(
                    new, spec, plans, fetcher(step), book, settings, step.run_id, step.log
                )
        finally:
            book.close()
        for line in result.lines:
            step.log.info(line)
        step.log_metrics(result.metrics)
        described = {
            "source": params.source,
            "models": {m.name: m.version for m in chosen},
            "ledger": book.shown,
        }
        mlflow.set_tags({"source": params.source, "ledger": book.shown, "models": ", ".join(params.models)})
        out = step.workdir / "out"
        step.log_artifact(
            params.predictions_artifact,
            write_table(result.predictions, out / "predictions" / "predictions.parquet"),
            "predictions",
            f"{len(result.predictions)} rows of {params.source} with their predictions by "
            + ", ".join(f"{m.name} ({m.version})" for m in chosen),
            {**described, "rows": len(result.predictions)},
        )
        step.log_artifact(
            params.rejected_artifact,
            write_table(result.rejected, out / "rejected" / "rejected_rows.parquet"),
            "rejected_rows",
            f"{len(result.rejected)} rows of {params.source} not scored, with the reason",
            {**described, "rows": len(result.rejected)},
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
