"""promote: picks the best model export among the candidates, scores it and the current `prod` model
through their pyfunc flavor on the same test data, and moves `prod` in the Model Registry when the
candidate passes the gate (or rolls `prod` back); runs only when named, never reused from the cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError, cause
from mlpipe.pipeline.contract import StepContract, StepParams, param, reads
from mlpipe.pipeline.step import Step, run_script, step_run
from mlpipe.tracking import promotion, wandb_mirror

if TYPE_CHECKING:
    from mlpipe.data.spec import DatasetSpec


@dataclass(frozen=True)
class Params(StepParams):
    model_name: str = param("MLflow Model Registry name (one ending in _<model> holds that model only)")
    candidates: str = param("experiment, sweep:last, sweep:<sweep dir> or runs:<id>,<id>,...")
    metric: str = param("Metric of the train runs that picks the best candidate")
    direction: str = param("minimize or maximize (the metrics' direction)")
    gate_metric: str = param("Metric (any test_model logs) both the candidate and prod are scored with")
    tolerance: float = param("Move prod if the candidate is at most this much worse")
    force: bool = param("Move prod whatever the gate says")
    rollback: bool = param("Move prod back to where it was before the last move")
    alias: str = param("The alias to move")
    model_artifact: str = reads(
        "model_export", "Model export of the pipeline run (orders promote after train)"
    )
    test_artifact: str = reads("test_data", context="evaluation")


CONTRACT = StepContract("promote", Params, __doc__, opt_in=True, side_effects=True)


def mirror_move(step: Step, record: dict, alias: str) -> None:
    """W&B's view of a move: the alias on the same model version (in place when online), and the
    promoted version recorded in the step's W&B run."""
    if not step.wandb.enabled:
        return
    version = step.store.resolve(record["artifact"])
    path = step.store.download(version, step.workdir / "mirror")
    wandb_mirror.mirror_promotion(version, path, alias, mirror=step.wandb)


def roll_back(step: Step, client: MlflowClient, params: Params) -> None:
    with promotion.promotion_lock(client, params.model_name):
        undo = promotion.rollback_target(promotion.history(client, params.model_name))
        target = client.get_model_version(params.model_name, str(undo["previous_version"]))
        record = promotion.move(
            client, step.store, params.model_name, params.alias, target, "rollback", step.run_id, "", None
        )
    step.log_json(record, "prod_move.json")
    mirror_move(step, record, params.alias)
    mlflow.set_tags({"decision": "rollback", "prod_version": target.version})
    step.log.info(
        "rolled %s@%s back from version %s to version %s (undoing move %d)",
        params.model_name,
        params.alias,
        record["previous_version"],
        target.version,
        undo["move"],
    )


def gate_score(model: Any, test: Any, spec: DatasetSpec, metric: str, what: str) -> float:
    """`metric`, as test_model would log it, of a loaded model scored on the test data."""
    from mlpipe.models import scoring

    return promotion.metric_of(scoring.evaluate(model, test, spec)[1], metric, what)


def load_prod(step: Step, params: Params, current: ModelVersion) -> Any | None:
    """The model prod holds; None when it cannot be loaded and `force` replaces it anyway."""
    from mlpipe.models import scoring

    try:
        return scoring.load(f"models:/{params.model_name}/{current.version}")
    except Exception as e:  # a cut file, a missing one, a class that no longer imports
        problem = f"prod model v{current.version} of '{params.model_name}' cannot be loaded: {cause(e)}"
        if not params.force:
            raise StepError(f"{step.name}: {problem}; promote.force=true replaces it") from e
        step.log.warning("%s; promote.force=true replaces it", problem)
        return None


def named_family(name: str, families: list[str]) -> str | None:
    """The model config a registry name ends in (`nyc_airbnb_random_forest`), if any."""
    endings = [f for f in families if name.endswith(f"_{f}")]
    return max(endings, key=len) if endings else None


def check_name(step: Step, params: Params, chosen: promotion.Candidate, client: MlflowClient) -> str:
    """A registry name that names a family holds only that family (the names of an earlier
    default, `<dataset>_<model>`, stay usable for their own family); return the candidate's family."""
    from mlpipe.pipeline.config import groups

    family = promotion.family_of(client, chosen.version)
    named = named_family(params.model_name, groups().get("model", []))
    if family.name == "unknown":  # an export whose train run recorded no model config
        step.log.warning(
            "%s: its train run names no model config; its family is not checked", chosen.version.ref
        )
    elif named is not None and named != family.name:
        raise StepError(
            f"{step.name}: promote.model_name '{params.model_name}' names {named}, but the candidate "
            f"{chosen.version.ref} is a {family.describe()} model; promote into a name that names no "
            f"family (the default, the dataset's name '{step.spec.name}'), or pick {named} candidates"
        )
    return family.describe()


def note_earlier_registries(step: Step, params: Params, client: MlflowClient) -> None:
    """A first promotion into a new name: say where earlier defaults (`<dataset>_<model>`) left
    prod, which stays as it was."""
    from mlflow.exceptions import MlflowException

    from mlpipe.pipeline.config import groups

    try:
        client.get_registered_model(params.model_name)
        return
    except MlflowException:
        pass
    for family in groups().get("model", []):
        old = f"{step.spec.name}_{family}"
        holder = promotion.alias_version(client, old, params.alias) if old != params.model_name else None
        if holder is not None:
            step.log.info(
                "'%s' is new: the earlier registry '%s' (%s: version %s) is left as it was; "
                "promote.model_name=%s and inference.model_name=%s keep using it",
                params.model_name,
                old,
                params.alias,
                holder.version,
                old,
                old,
            )


def run(params: Params) -> None:
    from mlpipe.models import scoring

    with step_run(CONTRACT, params) as step:
        client = MlflowClient()
        if params.rollback:
            roll_back(step, client, params)
            return
        spec = step.spec
        if params.candidates == "artifact":
            version = step.store.resolve(params.model_artifact)
            chosen = promotion.Candidate(version.run_id, float("nan"), version)
        else:
            found = promotion.find_candidates(step.store, params.candidates, params.metric)
            chosen = promotion.best(found, params.direction)
            step.log.info(
                "best of %d candidates (%s) by %s: %s from run %s (%s %.4g)",
                len(found),
                params.candidates,
                params.metric,
                chosen.version.ref,
                chosen.run_id,
                params.metric,
                chosen.value,
            )
        family = check_name(step, params, chosen, client)
        note_earlier_registries(step, params, client)
        step.store.record_use(step.run_id, chosen.version)
        test_version, test = step.read_data(params.test_artifact)
        candidate_score = gate_score(
            scoring.load(chosen.version.uri), test, spec, params.gate_metric, chosen.version.ref
        )
        step.log_metrics({f"candidate_{params.gate_metric}": candidate_score})
        registered: ModelVersion | None = None  # registered only when it is moved to prod
        prod_score: float | None = None
        with promotion.promotion_lock(client, params.model_name):
            current = promotion.alias_version(client, params.model_name, params.alias)
            if current is None:
                decision = "promoted"
            elif current.tags.get(promotion.TAG_DIGEST) == chosen.version.digest:
                decision, registered, prod_score = "already_prod", current, candidate_score
            else:
                prod = load_prod(step, params, current)
                if prod is not None:
                    what = f"prod version {current.version}"
                    prod_score = gate_score(prod, test, spec, params.gate_metric, what)
                passes = prod_score is not None and promotion.better(
                    candidate_score, prod_score, params.direction, params.tolerance
                )
                decision = "promoted" if passes else ("forced" if params.force else "kept")
            if decision in ("promoted", "forced"):
                registered = promotion.register(client, step.store, params.model_name, chosen.version)
                record = promotion.move(
                    client,
                    step.store,
                    params.model_name,
                    params.alias,
                    registered,
                    decision,
                    step.run_id,
                    params.gate_metric,
                    candidate_score,
                )
                step.log_json(record, "prod_move.json")
                mirror_move(step, record, params.alias)
        if prod_score is not None:
            step.log_metrics({f"prod_{params.gate_metric}": prod_score})
        mlflow.set_tags(
            {
                "decision": decision,
                "candidate_version": registered.version if registered else "not registered",
                "candidate_model": family,
                "prod_version_before": current.version if current else "none",
                "test_artifact": test_version.ref,
            }
        )
        if current is None:
            versus = "no prod yet"
        elif prod_score is None:
            versus = f"prod version {current.version}, which cannot be loaded"
        else:
            versus = f"prod version {current.version} {prod_score:.4g}"
        candidate = f"{chosen.version.ref}, {family}"  # and its registry version, once it has one
        if registered is not None:
            candidate = f"version {registered.version} of {params.model_name} ({candidate})"
        step.log.info(
            "%s: candidate %s %s %.4g vs %s on %s (tolerance %g)",
            decision,
            candidate,
            params.gate_metric,
            candidate_score,
            versus,
            test_version.ref,
            params.tolerance,
        )
        if decision == "kept":
            step.log.info("prod stays on version %s; promote.force=true moves it anyway", current.version)  # type: ignore[union-attr]


if __name__ == "__main__":
    run_script(CONTRACT, run)
