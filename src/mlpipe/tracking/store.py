"""The MLflow tracking store: which one, pointing every process at it, and the experiment."""

from __future__ import annotations

import base64
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from mlpipe import project
from mlpipe.errors import StepError

if TYPE_CHECKING:  # MLflow itself loads once the config is composed (see entry.py)
    from mlflow.entities import Experiment
    from mlflow.tracking import MlflowClient

ENV_URI = "MLFLOW_TRACKING_URI"
ENV_USERNAME, ENV_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"  # basic auth
SQLITE = "sqlite:///"
# MLflow's UI opens an experiment of this kind on its model-training pages (Runs, Models), not
# on the GenAI ones (Traces) it starts on otherwise.
TAG_KIND, KIND = "mlflow.experimentKind", "custom_model_development"
ENV_UI = "MLPIPE_UI_ADDRESS"  # where `make ui` serves a local store (default below)
UI_ADDRESS = "http://127.0.0.1:5000"


def default_uri() -> str:
    return f"{SQLITE}{project.results_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` always wins; otherwise the SQLite file under the results root."""
    return os.environ.get(ENV_URI) or default_uri()


def absolute(uri: str, base: Path) -> str:
    """A SQLite URI with a relative path (MLflow's own default is `sqlite:///mlflow.db`) made
    absolute from `base`, so every process, whatever its working directory, finds one store."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return f"{SQLITE}{(base / uri.removeprefix(SQLITE)).resolve()}"
    return uri


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store sit next to it; a server decides for itself."""
    if uri.startswith(SQLITE):
        return (Path(uri.removeprefix(SQLITE)).parent / "mlartifacts").as_uri()
    return None


def configure() -> str:
    """Point MLflow (and every child process) at the store; return its URI."""
    import mlflow  # here, not above: main.py reads ENV_URI and `absolute` before it needs MLflow

    uri = tracking_uri()
    os.environ[ENV_URI] = uri
    # Steps fetch artifacts from a local store: a progress bar per file is only noise in the log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    return uri


def unreachable(uri: str, timeout_s: float = 5.0) -> str | None:
    """None when the store at `uri` answers (a local file always does); else why not, one line."""
    scheme = uri.partition("://")[0]
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                return None if response.status == 200 else f"HTTP {response.status} from /health"
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code} from /health"
        except (OSError, ValueError) as e:
            return " ".join(str(getattr(e, "reason", e)).split()) or type(e).__name__
    if scheme.startswith("postgresql"):
        from mlpipe.tracking.postgres import answers

        return answers(uri, timeout_s)
    return None


def refused(uri: str, timeout_s: float = 5.0) -> int | None:
    """The HTTP status (401, 403) with which a tracking server behind authentication refuses
    this client's credentials (MLFLOW_TRACKING_USERNAME and _PASSWORD, when set); None when it
    lets it in."""
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return None
    except urllib.error.HTTPError as e:
        return e.code if e.code in (401, 403) else None
    except (OSError, ValueError):
        return None  # said by `unreachable`, or by MLflow's own error further on


def check_answers(what: str = "main") -> None:
    """Stop with one line, before anything starts, when the tracking store does not answer
    (MLflow's client would retry for minutes) or a server refuses this client's credentials."""
    uri = tracking_uri()
    why = unreachable(uri)
    if why is None and uri.startswith(("http://", "https://")):
        code = refused(uri)
        if code is not None:
            given = os.environ.get(ENV_USERNAME)
            whose = f"the credentials of user '{given}'" if given else "a request without credentials"
            raise StepError(
                f"{what}: the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) refused {whose} "
                f"(HTTP {code}); set {ENV_USERNAME} and {ENV_PASSWORD} (`make server AUTH=1` "
                "prints them)"
            )
    if why is None:
        return
    if uri.startswith("postgresql"):
        from mlpipe.tracking.postgres import where

        raise StepError(f"{what}: PostgreSQL at {where(uri)} (MLFLOW_TRACKING_URI) does not answer: {why}")
    raise StepError(
        f"{what}: the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer: {why}; "
        "start it with `make server` or point MLFLOW_TRACKING_URI at a running one"
    )


def mark_kind(client: MlflowClient, experiment: Experiment) -> None:
    """Tag the experiment as model training, unless someone said what it is already."""
    if TAG_KIND not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, TAG_KIND, KIND)


def ensure_experiment(name: str) -> str:
    """Create the store and the experiment once; safe when several processes race on it."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = configure()
    client = MlflowClient(uri)
    for attempt in range(5):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            mark_kind(client, experiment)
            return experiment.experiment_id
        try:
            return client.create_experiment(
                name, artifact_location=default_artifact_location(uri), tags={TAG_KIND: KIND}
            )
        except MlflowException:
            # Another process created it (or is migrating a fresh database): look again.
            time.sleep(0.2 * (attempt + 1))
    raise MlflowException(f"could not create or find the MLflow experiment '{name}' in {uri}")


def ui_base() -> str:
    """The MLflow UI's address: the tracking server's own, else where `make ui` serves."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get(ENV_UI, UI_ADDRESS).rstrip("/")


def ui_url(experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or of one of its runs), on the training view."""
    page = f"experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{ui_base()}/#/{page}?workflowType=machine_learning"
