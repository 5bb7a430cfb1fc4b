"""Model exports as MLflow 3 logged models, so the experiment's model list shows every trained
model with its parameters and metrics, runs show the model they made or used, and registry
versions point at it.

The artifact store stays the record of named versions (`model_export:v3`); a logged model holds a
copy of the same files, tagged with their content digest, so one content is one logged model
whichever runs made or used it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mlflow.entities import LoggedModel, LoggedModelInput, LoggedModelOutput, LoggedModelStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from mlpipe.tracking import local_files

TAG_DIGEST = "mlpipe.digest"  # the content digest of the export (as the artifact store has it)
TAG_ARTIFACT = "mlpipe.artifact"  # the artifact name it was logged under
TAG_DESCRIPTION = "mlflow.note.content"  # the description MLflow's pages show


def find(client: MlflowClient, experiment_id: str, digest: str) -> LoggedModel | None:
    """The ready logged model holding the content `digest`, if there is one."""
    found = client.search_logged_models([experiment_id], filter_string=f"tags.`{TAG_DIGEST}` = '{digest}'")
    return next((m for m in found if m.status == LoggedModelStatus.READY), None)


def log(
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    name: str,
    path: Path,
    digest: str,
    artifact: str,
    params: Mapping[str, str],
    description: str,
) -> LoggedModel:
    """The logged model of the export in `path` (made once per content), recorded as an output
    of the run."""
    model = find(client, experiment_id, digest)
    if model is None:
        model = client.create_logged_model(
            experiment_id,
            name=name,
            source_run_id=run_id,
            tags={TAG_DIGEST: digest, TAG_ARTIFACT: artifact, TAG_DESCRIPTION: description},
            params=dict(params),
        )
        try:
            stored = local_files.local_dir(model.artifact_location)
            if stored is None or not local_files.link(path, stored):  # linked: the bytes stored once
                client.log_model_artifacts(model.model_id, str(path))
        except Exception:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        model = client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model


def record_use(client: MlflowClient, run_id: str, model_id: str) -> None:
    client.log_inputs(run_id, models=[LoggedModelInput(model_id)])


def link_version(client: MlflowClient, model_id: str, name: str, version: int | str) -> None:
    """List a registry version on its logged model, as MLflow's `register_model` does (its model
    page reads this tag)."""
    tags = client.get_logged_model(model_id).tags
    versions = json.loads(tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    entry = {"name": name, "version": version}
    if entry not in versions:
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*versions, entry])})
