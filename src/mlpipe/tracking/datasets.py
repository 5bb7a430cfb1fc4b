"""Artifact versions as MLflow datasets, so the runs table's Dataset column and each run's page
show which data a step read and wrote.

A dataset is named after its artifact (`clean_data`); its digest is the start of our content
digest (what the log lines show), its source the URI the version's files are stored at, its schema
what the data kind said of the data, its profile the version's metadata (rows, columns, classes),
and its context how the step used it (`training`, `evaluation`, `input`, `output`). MLflow keeps
one dataset per name and digest in an experiment, so every run that reads a version points at the
record its writer made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

DIGEST_CHARS = 12  # as many as the log lines show; MLflow allows 36
TAG_VERSION = "mlpipe.artifact"  # on a dataset read: the version (`clean_data:v0`)


def short_digest(digest: str) -> str:
    return digest[:DIGEST_CHARS]


def dataset(
    name: str,
    digest: str,
    uri: str,
    schema: Mapping[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
) -> Dataset:
    """The MLflow dataset of an artifact version whose files are stored at `uri`."""
    scheme = urlparse(uri).scheme
    return Dataset(
        name=name,
        digest=short_digest(digest),
        # The types MLflow's own artifact sources use: `local` for files, else the URI scheme.
        source_type="local" if scheme in ("", "file") else scheme,
        source=json.dumps({"uri": uri}),
        schema=json.dumps(schema) if schema else None,
        profile=json.dumps(profile, default=str) if profile else None,
    )


def record(
    client: MlflowClient, run_id: str, data: Dataset, context: str, tags: Mapping[str, str] | None = None
) -> None:
    """Log `data` as an input of the run, labelled with `context`."""
    labels = {MLFLOW_DATASET_CONTEXT: context, **(tags or {})}
    client.log_inputs(run_id, datasets=[DatasetInput(data, [InputTag(k, v) for k, v in labels.items()])])
