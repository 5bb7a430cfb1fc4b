"""Promotion of a model export to `prod`: pick the best candidate, gate it against the current
holder, move the alias in the MLflow Model Registry and on the artifact, keep the history.

Every move happens under a lock (a registered model whose creation the store makes atomic), so
two promotions racing end with one winner and a history where each move starts where the
previous one ended. The history is one registered-model tag per move (`mlpipe.prod_move.N`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking import logged_models
from mlpipe.tracking.artifacts import ArtifactStore, ArtifactVersion
from mlpipe.tracking.runs import TAG_PARENT, TAG_SWEEP_ID

STEP = "promote"
MODEL_ARTIFACT = "model_export"
TAG_DIGEST = "mlpipe.digest"  # on a model version: the artifact version it was registered from
TAG_ARTIFACT = "mlpipe.artifact"
TAG_MODEL = "mlpipe.model"  # on a model version: the model config (family) that trained it
TAG_ESTIMATOR = "mlpipe.estimator"  # ... and its estimator class, when it has one
MOVE_TAG = "mlpipe.prod_move."  # registered-model tags, one per move of the alias, numbered
LOCK_SUFFIX = ".promotion-lock"
LOCK_STALE_S = 600.0  # a lock older than this was left by a crashed promotion


# -- choosing a candidate --------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    run_id: str  # the train run that logged the export
    value: float  # its selection metric
    version: ArtifactVersion


def _sweep_parents(store: ArtifactStore, sweep: str) -> list[str]:
    if sweep == "last":
        runs = store.search(f"tags.`{TAG_SWEEP_ID}` LIKE '%'", order_by=["attributes.start_time DESC"])
        if not runs:
            raise StepError(f"{STEP}: candidates 'sweep:last': no run in this experiment belongs to a sweep")
        sweep = runs[0].data.tags[TAG_SWEEP_ID]
    parents = store.search(f"tags.`{TAG_SWEEP_ID}` = '{sweep}'")
    if not parents:
        raise StepError(f"{STEP}: candidates 'sweep:{sweep}': no pipeline run carries that sweep id")
    return [r.info.run_id for r in parents]


def find_candidates(store: ArtifactStore, candidates: str, metric: str) -> list[Candidate]:
    """The finished runs that exported a model, restricted to a sweep or a list of runs:
    `experiment`, `sweep:last`, `sweep:<id>` or `runs:<id>,<id>` (pipeline or train runs)."""
    kind, _, arg = candidates.partition(":")
    producers = store.producing_runs(MODEL_ARTIFACT)
    if kind == "sweep":
        parents = set(_sweep_parents(store, arg or "last"))
        producers = [r for r in producers if r.data.tags.get(TAG_PARENT) in parents]
    elif kind == "runs":
        wanted = {r.strip() for r in arg.split(",") if r.strip()}
        producers = [r for r in producers if r.info.run_id in wanted or r.data.tags.get(TAG_PARENT) in wanted]
    elif kind != "experiment":
        raise StepError(
            f"{STEP}: candidates '{candidates}': expected experiment, sweep:last, sweep:<id> or runs:<id>,..."
        )
    versions = {v.digest: v for v in store.versions(MODEL_ARTIFACT)}
    found = []
    for run in producers:
        if metric in run.data.metrics:
            digest = store.outputs_of(run)[MODEL_ARTIFACT]
            found.append(Candidate(run.info.run_id, float(run.data.metrics[metric]), versions[digest]))
    if not found:
        raise StepError(
            f"{STEP}: no model export with metric '{metric}' among the candidates '{candidates}' "
            f"({len(producers)} finished runs exported a model)"
        )
    return found


def better(a: float, b: float, direction: str, tolerance: float = 0.0) -> bool:
    """Is `a` at least as good as `b`, allowing `tolerance` worse?"""
    if direction not in ("minimize", "maximize"):
        raise StepError(f"{STEP}: direction '{direction}': expected minimize or maximize")
    return a <= b + tolerance if direction == "minimize" else a >= b - tolerance


def best(candidates: list[Candidate], direction: str) -> Candidate:
    sign = 1.0 if direction == "minimize" else -1.0
    return min(candidates, key=lambda c: (sign * c.value, c.version.version))


def metric_of(scores: dict[str, float], metric: str, what: str) -> float:
    if metric not in scores:
        raise StepError(
            f"{STEP}: gate_metric '{metric}' not computed for {what}; expected one of {', '.join(scores)}"
        )
    return scores[metric]


# -- the registry ----------------------------------------------------------------------------
@contextmanager
def promotion_lock(client: MlflowClient, name: str, timeout_s: float = 300.0) -> Iterator[None]:
    """Exclusive across processes and machines: creating a registered model is atomic in the store."""
    lock = f"{name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock, tags={"mlpipe.lock.holder": holder, "mlpipe.lock.since": str(time.time())}
            )
            break
        except MlflowException:
            try:
                since = float(client.get_registered_model(lock).tags.get("mlpipe.lock.since", "inf"))
                if time.time() - since > LOCK_STALE_S:
                    client.delete_registered_model(lock)  # left by a crashed promotion
                    continue
            except MlflowException:
                pass  # released between our two calls: try again
            if time.monotonic() > deadline:
                raise StepError(
                    f"{STEP}: '{lock}' is held by another promotion; waited {timeout_s:.0f} s"
                ) from None
            time.sleep(0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def ensure_registered(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="promoted by mlpipe's promote step")
        except MlflowException:
            client.get_registered_model(name)  # created meanwhile by another promotion


@dataclass(frozen=True)
class Family:
    """What trained an export, as its train run recorded it: the model config (`random_forest`)
    and the estimator class, if the config names one."""

    name: str
    estimator: str = ""

    def describe(self) -> str:
        return f"{self.name} ({self.estimator})" if self.estimator else self.name


def family_of(client: MlflowClient, version: ArtifactVersion) -> Family:
    """The family of the run that made the export (its `model.*` parameters), so a registry
    version says what it holds whatever command promoted it."""
    params = client.get_run(version.run_id).data.params
    return Family(params.get("model.name", "unknown"), params.get("model.estimator._target_", ""))


def register(client: MlflowClient, store: ArtifactStore, name: str, version: ArtifactVersion) -> ModelVersion:
    """The registry version of an artifact version; registered once (matched by digest), pointing
    at the export's logged model when it has one, tagged and described with its family."""
    ensure_registered(client, name)
    for existing in client.search_model_versions(f"name = '{name}'"):
        if existing.tags.get(TAG_DIGEST) == version.digest:
            return existing
    logged = logged_models.find(client, store.experiment_id, version.digest)
    # The logged model holds the same files (same digest); exports from before logged models
    # existed are registered from the artifact store.
    source = f"models:/{logged.model_id}" if logged else store.location(version.run_id, version.name)
    family = family_of(client, version)
    tags = {TAG_DIGEST: version.digest, TAG_ARTIFACT: version.ref, TAG_MODEL: family.name}
    if family.estimator:
        tags[TAG_ESTIMATOR] = family.estimator
    registered = client.create_model_version(
        name,
        source,
        run_id=version.run_id,
        tags=tags,
        description=f"{family.describe()} from {version.ref}: {version.description}",
        model_id=logged.model_id if logged else None,
    )
    if logged is not None:
        logged_models.link_version(client, logged.model_id, name, registered.version)
    return registered


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The registry version the alias points at, if any."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def history(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every move of the alias, oldest first."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return []
    moves = [json.loads(v) for k, v in tags.items() if k.startswith(MOVE_TAG)]
    return sorted(moves, key=lambda m: m["move"])


def move(
    client: MlflowClient,
    store: ArtifactStore,
    name: str,
    alias: str,
    target: ModelVersion,
    kind: str,
    run_id: str,
    metric: str,
    value: float | None,
) -> dict[str, Any]:
    """Point the registry alias and the artifact alias at `target`; record the move. Call under
    `promotion_lock`, after reading the current holder under the same lock."""
    previous = alias_version(client, name, alias)
    digest = target.tags[TAG_DIGEST]
    try:
        artifact = store.version_with(MODEL_ARTIFACT, digest)
    except StepError as e:
        raise StepError(
            f"{STEP}: model version {target.version} of '{name}' comes from an export this experiment "
            "does not hold"
        ) from e
    record = {
        "move": len(history(client, name)) + 1,
        "kind": kind,
        "previous_version": str(previous.version) if previous else None,
        "new_version": str(target.version),
        "artifact": artifact.ref,
        "metric": metric,
        "value": None if value is None or math.isnan(value) else value,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
    }
    client.set_registered_model_alias(name, alias, target.version)
    store.set_alias(artifact, alias)
    client.set_registered_model_tag(name, f"{MOVE_TAG}{record['move']:06d}", json.dumps(record))
    client.set_model_version_tag(name, target.version, f"mlpipe.{alias}.since", record["time"])
    return record


def rollback_target(moves: list[dict[str, Any]]) -> dict[str, Any]:
    """The move a rollback undoes: the latest promotion not undone yet (rollbacks pop them)."""
    undone: list[dict[str, Any]] = []
    for m in moves:
        if m["kind"] == "rollback":
            if undone:
                undone.pop()
        else:
            undone.append(m)
    if not undone:
        raise StepError(f"{STEP}: promote.rollback: no promotion left to roll back")
    last = undone[-1]
    if last["previous_version"] is None:
        raise StepError(
            f"{STEP}: promote.rollback: version {last['new_version']} was the first to hold the alias; "
            "there is no earlier holder to go back to"
        )
    return last
