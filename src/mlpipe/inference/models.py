"""The models `inference.models` names, each resolved once, at the start, to one immutable version:
an alias (`prod`, `challenger`) or a version number of the registered model `inference.model_name`,
a `models:/<name>@<alias>` or `models:/<name>/<version>` URI, or an artifact reference
(`model_export:v3`, `model_export:prod`). An alias that moves during the run changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore, ArtifactVersion
from mlpipe.tracking.promotion import MODEL_ARTIFACT, TAG_DIGEST

REGISTRY_PREFIX = "models:/"
EXPECTED = (
    "expected an alias or version number of inference.model_name (prod, 3), models:/<name>@<alias>, "
    "models:/<name>/<version> or model_export:vN"
)


@dataclass(frozen=True)
class Model:
    name: str  # as inference.models names it: the ledger's and the outputs' name for it
    uri: str  # what MLflow loads: models:/<registered name>/<version>, or the artifact's runs:/ URI
    version: str  # what the ledger records as the version that scored a row
    artifact: ArtifactVersion | None  # the model_export version it is, for lineage


def registry_parts(reference: str, model_name: str) -> tuple[str, str, str] | None:
    """(registered name, "alias" or "version", value), or None for an artifact reference."""
    if reference.startswith(REGISTRY_PREFIX):
        rest = reference.removeprefix(REGISTRY_PREFIX)
        name, at, alias = rest.partition("@")
        if at:
            return name, "alias", alias
        name, _, version = rest.rpartition("/")
        return name, "version", version
    if ":" in reference:
        return None
    return (model_name, "version", reference) if reference.isdigit() else (model_name, "alias", reference)


def resolve(reference: str, model_name: str, store: ArtifactStore, client: MlflowClient, where: str) -> Model:
    parts = registry_parts(reference, model_name)
    if parts is None:
        try:
            artifact = store.resolve(reference)
        except StepError as e:
            raise StepError(f"{where}: model '{reference}': {e}; {EXPECTED}") from e
        return Model(reference, artifact.uri, artifact.ref, artifact)
    name, by, value = parts
    try:
        if by == "alias":
            found = client.get_model_version_by_alias(name, value)
        else:
            found = client.get_model_version(name, value)
    except MlflowException as e:
        what = f"no version of registered model '{name}' has the alias '{value}'"
        if by == "version":
            what = f"registered model '{name}' has no version '{value}'"
        hint = " (promote sets prod: -P steps=promote)" if by == "alias" else ""
        raise StepError(f"{where}: model '{reference}': {what}{hint}; {EXPECTED}") from e
    uri = f"{REGISTRY_PREFIX}{name}/{found.version}"
    return Model(reference, uri, uri, lineage(store, found.tags.get(TAG_DIGEST)))


def lineage(store: ArtifactStore, digest: str | None) -> ArtifactVersion | None:
    """The model_export version a registry version was registered from, when it is in this
    experiment (promote tags the registry version with the export's digest)."""
    if not digest:
        return None
    return next((v for v in store.versions(MODEL_ARTIFACT) if v.digest == digest), None)


def download(model: Model, dest: Path) -> Path:
    """The model's files in a local folder, fetched once: every scorer loads from there."""
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=str(dest)))
