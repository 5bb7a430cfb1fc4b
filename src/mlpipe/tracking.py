"""MLflow set-up shared by main.py and every step: the store, the experiment, the runs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlpipe.paths import default_artifact_location, tracking_uri

# Tags this project writes on runs; one place, so queries and writers agree.
TAG_STEP = "mlpipe.step"
TAG_PIPELINE = "mlpipe.pipeline"
TAG_ERROR = "mlpipe.error"
TAG_PARENT = "mlflow.parentRunId"
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def configure() -> str:
    """Point MLflow (and every child process) at the store; return its URI."""
    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    # Steps fetch artifacts from a local store: a progress bar per file is only noise in the log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """Create the store and the experiment once; safe when several processes race on it."""
    uri = configure()
    client = MlflowClient(uri)
    for attempt in range(5):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=default_artifact_location(uri))
        except MlflowException:
            # Another process created it (or is migrating a fresh database): look again.
            time.sleep(0.2 * (attempt + 1))
    raise MlflowException(f"could not create or find the MLflow experiment '{name}' in {uri}")


def is_secret(name: str) -> bool:
    return any(marker in name.upper() for marker in SECRET_MARKERS)


def environment() -> dict[str, str]:
    """A copy of os.environ, safe while another thread changes it (MLflow's telemetry thread
    sets and unsets a variable: iterating os.environ then raises KeyError or RuntimeError)."""
    for _ in range(10):
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue
    return dict(os.environ)


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (never logged)."""
    return [v for k, v in environment().items() if is_secret(k) and len(v) >= 4]


def scrub(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """`{"a": {"b": 1}}` -> `("a.b", 1)`, skipping keys that look like secrets."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if is_secret(str(key)):
            continue
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def loggable(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flat parameters safe to log anywhere (MLflow params, W&B config): no secret-looking key,
    no secret value inside a string; numbers and booleans keep their type."""
    return {k: _safe_value(v) for k, v in flatten(config)}


def _safe_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value if scrub(str(value)) == str(value) else "***"
    return scrub_tree(value)


def scrub_tree(data: Any) -> Any:
    """A copy of nested metadata without secret-looking keys or secret values."""
    if isinstance(data, Mapping):
        return {k: scrub_tree(v) for k, v in data.items() if not is_secret(str(k))}
    if isinstance(data, list | tuple):
        return [scrub_tree(v) for v in data]
    return scrub(data) if isinstance(data, str) else data


class ScrubFilter(logging.Filter):
    """Masks secret values in every log line (a step's output is also what W&B records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def scrub_logs() -> None:
    """Install the filter on the root handlers (after `logging.basicConfig`)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def log_params(config: Mapping[str, Any], run_id: str | None = None) -> None:
    """Log a nested config as flat parameters (MLflow caps a value at 6000 characters)."""
    params = {k: str(v)[:6000] for k, v in loggable(config).items()}  # loggable scrubbed them
    client = MlflowClient()
    run_id = run_id or mlflow.active_run().info.run_id  # type: ignore[union-attr]
    items = list(params.items())
    for start in range(0, len(items), 100):
        client.log_batch(
            run_id,
            params=[mlflow.entities.Param(k, v) for k, v in items[start : start + 100]],
        )


def finish_run(run_id: str, failed: bool) -> None:
    status = RunStatus.FAILED if failed else RunStatus.FINISHED
    MlflowClient().set_terminated(run_id, RunStatus.to_string(status))
