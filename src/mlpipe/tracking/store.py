"""The MLflow tracking store: which one, pointing every process at it, and the experiment."""

from __future__ import annotations

import base64
import math
import os
import re
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
ENV_TIMEOUT = "MLPIPE_STORE_TIMEOUT_S"  # tracking.store_timeout_s, for every process of the run
DEFAULT_TIMEOUT_S = 60.0
ENV_OURS = "MLPIPE_RETRY_SETTINGS"  # which of MLflow's retry variables this project set
_given_up = False
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


# -- a store that stops answering: bounded retries, then one line -------------------------------
def retry_settings(timeout_s: float) -> dict[str, str]:
    """MLflow's HTTP retry settings that give up on a request after about `timeout_s` of
    failures (its defaults: 7 retries with backoff, some 4 minutes per request). urllib3 waits
    0, 2f, 4f, ... seconds between tries: f (2^r - 2) in all for r retries."""
    factor = max(1, round(timeout_s / 30))  # MLflow reads the factor as an integer
    retries = max(1, int(math.log2(timeout_s / factor + 2)))
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(factor),
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
        # A request that hangs: one try waits this long (a big upload must fit in it).
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(min(120, max(30, timeout_s)))),
    }


def bound_retries(timeout_s: float | None = None) -> float:
    """Make this process (and those it starts) give up on a store that stops answering after
    about `timeout_s` (tracking.store_timeout_s; by default what MLPIPE_STORE_TIMEOUT_S says, else
    60 s). MLflow's own variables, when the user set them, win. Return the bound."""
    if timeout_s is None:
        timeout_s = float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT_S)
    if timeout_s <= 0:
        raise StepError(
            f"main: tracking.store_timeout_s is {timeout_s:g}; expected a number of seconds above 0"
        )
    os.environ[ENV_TIMEOUT] = f"{timeout_s:g}"
    ours = set(filter(None, os.environ.get(ENV_OURS, "").split(",")))
    for name, value in retry_settings(timeout_s).items():
        if name not in os.environ or name in ours:
            os.environ[name] = value
            ours.add(name)
    os.environ[ENV_OURS] = ",".join(sorted(ours))
    return timeout_s


def stop_retrying() -> None:
    """The store was given up on: the bookkeeping that follows (ending runs) tries each call once,
    quickly, so that it succeeds if the store is back and costs nothing if it is not."""
    global _given_up
    _given_up = True
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")


def given_up() -> bool:
    """Whether this process gave up on the store (`stop_retrying`)."""
    return _given_up


def lost_store(error: BaseException) -> bool:
    """Whether an error (or one it came from) is the store not answering: MLflow's client out of
    retries or connections (`API request to ... failed with exception ...`), or a database
    connection that failed."""
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen)
        if "API request to" in text and "failed with exception" in text:
            return True
        if type(seen).__name__ == "OperationalError" and "connect" in text.lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StoreUnavailable(StepError):
    """The tracking store stopped answering and did not come back within the bound."""


def unavailable(what: str, error: BaseException | None = None) -> StoreUnavailable:
    """The one line for a store given up on (`error`: MLflow's, whose cause it names), and this
    process set to stop retrying."""
    stop_retrying()
    return StoreUnavailable(
        f"{what}: the tracking store at {tracking_uri()} stopped answering"
        f"{f' ({outage_cause(error)})' if error is not None else ''} and did not come back within "
        f"{os.environ.get(ENV_TIMEOUT) or f'{DEFAULT_TIMEOUT_S:g}'} s (tracking.store_timeout_s): "
        "gave up; the runs it could not end are marked FAILED by the next pipeline once the store answers"
    )


def outage_cause(error: BaseException) -> str:
    """What MLflow's client met on its last try, in a few words."""
    text = " ".join(str(error).split())
    status = re.search(r"too many (\d{3}) error responses", text)
    if status:
        return f"HTTP {status.group(1)} on every try"
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "requests timed out"
    return text[:200]


def configure() -> str:
    """Point MLflow (and every child process) at the store, with retries bounded as
    `bound_retries` says; return its URI."""
    import mlflow  # here, not above: main.py reads ENV_URI and `absolute` before it needs MLflow

    uri = tracking_uri()
    os.environ[ENV_URI] = uri
    if ENV_OURS not in os.environ:  # main.py bounded them already (from the config)
        bound_retries()
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
