"""Beyond one machine: the pipeline against `mlflow server` on PostgreSQL (artifacts proxied),
a sweep on a Ray cluster that inherits nothing from the driver, promotion and serving from the
server's registry, parallel pipelines and experiment creations. One server for the module, as
`make server AUTH=1` starts it: PostgreSQL asks for its password, `mlflow server` for the basic
auth's, so every client above authenticates to both."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpipe.pipeline import sweep
from mlpipe.processes import alive, group_members, stop_group
from mlpipe.tracking import promotion, server, store
from mlpipe.tracking.artifacts import OUT
from mlpipe.tracking.runs import TAG_PARENT, TAG_PIPELINE, TAG_STEP
from tests.conftest import PROJECT_ROOT, run_main, subprocess_env
from tests.test_serving import free_port, model_rows, post, served
from tests.wandb_records import offline_runs

pytestmark = pytest.mark.slow
EXPERIMENT = "nyc_airbnb"
FAST_MODEL = ["model.estimator.n_jobs=1", "model.estimator.n_estimators=6"]


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[server.Server]:
    """`make server`'s PostgreSQL and `mlflow server`, in a temporary folder on free ports."""
    # Not under pytest's private tmp folder: as root, PostgreSQL runs as `postgres`, which must get in.
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-server-"))
    folder.chmod(0o755)
    started = server.start(folder, port=free_port(), auth=True)
    # What `make server` prints for a shell, for this process and every one it starts.
    client = {k: v for k, v in started.client_environment().items() if k != store.ENV_URI}
    os.environ.update(client)
    try:
        yield started
    finally:
        for name in client:
            os.environ.pop(name, None)
        server.stop(folder)
        assert not group_members(started.mlflow_pid)
        assert not alive(started.postgres_pid)
        shutil.rmtree(folder, ignore_errors=True)


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(uri)


def runs_of(uri: str, experiment: str, filter_string: str = "") -> list[mlflow.entities.Run]:
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], filter_string, max_results=500)


def test_eight_parallel_experiment_creations_lose_nothing(
    tracking_server: server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight jobs get-or-create the same new experiment at the same instant (the server sees
    eight concurrent creations) and each logs a run in it: none is lost, none lands in Default."""
    uri, name = tracking_server.tracking_uri, f"race-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = threading.Barrier(8)

    def job(number: int) -> str:
        start.wait()
        experiment_id = store.ensure_experiment(name)
        MlflowClient(uri).create_run(experiment_id, tags={"race": name, "job": str(number)})
        return experiment_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(job, range(8)))
    experiment = client_for(uri).get_experiment_by_name(name)
    assert ids == {experiment.experiment_id}
    assert sorted(r.data.tags["job"] for r in runs_of(uri, name)) == [str(n) for n in range(8)]
    assert not runs_of(uri, "Default", f"tags.race = '{name}'")


@pytest.fixture(scope="module")
def pipeline(tracking_server: server.Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The whole pipeline, every step a process of its own (the default executor), against the
    server; return step name -> run id."""
    done = run_main(FAST_MODEL, tracking_server.tracking_uri, tmp_path_factory.mktemp("pipeline"))
    assert done.returncode == 0, done.stderr[-3000:]
    steps = runs_of(tracking_server.tracking_uri, EXPERIMENT, f"tags.`{TAG_STEP}` LIKE '%'")
    return {r.data.tags[TAG_STEP]: r.info.run_id for r in steps}


def test_pipeline_against_the_server_keeps_artifacts_on_the_server(
    tracking_server: server.Server, pipeline: dict[str, str], tmp_path: Path
) -> None:
    assert sorted(pipeline) == sorted(
        ["download", "basic_cleaning", "data_check", "data_split", "train", "test_model"]
    )
    client = client_for(tracking_server.tracking_uri)
    for run_id in pipeline.values():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, no client-side path
    train = client.get_run(pipeline["train"])
    stored = Path(tracking_server.folder) / "artifacts" / train.info.experiment_id / train.info.run_id
    assert (stored / "artifacts" / "model_export" / "MLmodel").is_file()

    # Unchanged, the rerun (in process this time) reuses every step from the server's records.
    rerun = run_main(["main.executor=inprocess", *FAST_MODEL], tracking_server.tracking_uri, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr.count(" reused: run ") == 6, rerun.stderr[-3000:]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """`ray start --head` on 127.0.0.1, started from a bare environment in another folder (no
    project, a wrong store, W&B off): what a job needs must come from the driver. Stopped by
    its process group."""
    temp = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths have a length limit
    port = free_port()
    bare = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(temp),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{temp}/wrong.db",
        "MLPIPE_WANDB_MODE": "disabled",
    }
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--include-dashboard=false",
            "--num-cpus=2",
            f"--temp-dir={temp}",
        ],
        env=bare,
        cwd=temp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # the head answers once its GCS listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray start did not come up"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head.pid, timeout_s=3)
        assert not group_members(head.pid)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_sweep_promote_and_serve_from_the_server(
    tracking_server: server.Server, pipeline: dict[str, str], ray_cluster: str, tmp_path: Path
) -> None:
    uri = tracking_server.tracking_uri
    sweep_dir = tmp_path / "sweep"
    wandb_data = tmp_path / "wandb-data"
    done = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "main.py"),
            "main.steps=train",
            "main.executor=inprocess",
            *FAST_MODEL,
            "model.estimator.max_depth=2,4,8,16",
            "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address={ray_cluster}",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=PROJECT_ROOT,
        env=subprocess_env(
            MLFLOW_TRACKING_URI=uri,
            RAY_AUTH_MODE="disabled",
            MLPIPE_WANDB_MODE="offline",
            WANDB_DATA_DIR=str(wandb_data),  # W&B's staging folder, in the jobs too
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"joined the Ray cluster at {ray_cluster}" in done.stderr
    summary = (sweep_dir / sweep.SUMMARY_FILE).read_text()
    assert summary.count("FINISHED") == 4, summary
    jobs = runs_of(uri, EXPERIMENT, f"tags.`{sweep.TAG_SWEEP_ID}` = '{sweep.sweep_id(sweep_dir)}'")
    parents = {r.info.run_id for r in jobs if TAG_PIPELINE in r.data.tags}
    assert len(parents) == 4
    trains = [
        r
        for r in runs_of(uri, EXPERIMENT, f"tags.`{TAG_STEP}` = 'train'")
        if r.data.tags[TAG_PARENT] in parents
    ]
    # W&B settings reached the jobs: each mirrored its train run, offline, in its own folder.
    mirrored = offline_runs(sweep_dir)
    assert sorted(r.run_id for r in mirrored) == sorted(r.info.run_id for r in trains)
    assert any(wandb_data.rglob("*")), "W&B staged nothing in the folder the driver named"

    name = f"scale_{uuid.uuid4().hex[:6]}"
    promoted = run_main(
        [
            "main.steps=promote",
            "main.executor=inprocess",
            "promote.candidates=sweep:last",
            f"promote.model_name={name}",
        ],
        uri,
        tmp_path,
    )
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    client = client_for(uri)
    prod = client.get_model_version_by_alias(name, "prod")
    best = min(trains, key=lambda r: r.data.metrics["val_mae"])
    assert prod.tags[promotion.TAG_DIGEST] == best.data.tags[f"{OUT}{promotion.MODEL_ARTIFACT}"]
    assert [m["kind"] for m in promotion.history(client, name)] == ["promoted"]
    assert not client.search_registered_models(f"name = '{name}{promotion.LOCK_SUFFIX}'")  # lock released

    rows = model_rows(uri, EXPERIMENT, tmp_path, 1)
    with served(f"models:/{name}@prod", uri) as base:
        status, answer = post(f"{base}/invocations", rows)
    assert status == 200, answer
    mlflow.set_tracking_uri(uri)
    expected = mlflow.pyfunc.load_model(f"models:/{name}@prod").predict(rows)
    np.testing.assert_allclose(np.asarray(answer["predictions"]).ravel(), np.asarray(expected).ravel())

    # Batch inference scores with that prod model; its ledger is in the server's PostgreSQL.
    scored = run_main(
        ["main.steps=inference", "main.executor=inprocess", f"inference.model_name={name}"],
        uri,
        tmp_path,
        MLPIPE_DATABASE_URL=tracking_server.database_url,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    (inference,) = runs_of(uri, EXPERIMENT, f"tags.`{TAG_STEP}` = 'inference'")
    ledger = pd.read_sql(
        "SELECT model_version, count(*) AS n FROM inference_ledger GROUP BY model_version",
        tracking_server.database_url,
    )
    assert ledger.to_dict("records") == [
        {"model_version": f"models:/{name}/{prod.version}", "n": inference.data.metrics["rows_scored"]}
    ]


def test_two_pipelines_at_once_complete_with_their_own_runs(
    tracking_server: server.Server, tmp_path: Path
) -> None:
    uri = tracking_server.tracking_uri
    project = f"twin_{uuid.uuid4().hex[:6]}"  # a new experiment both create at once
    command = [
        sys.executable,
        str(PROJECT_ROOT / "main.py"),
        "main.steps='download,basic_cleaning,data_split'",
        "main.executor=inprocess",
        f"main.project_name={project}",
    ]
    processes = [
        subprocess.Popen(
            [*command, f"hydra.run.dir={tmp_path / str(n)}"],
            cwd=PROJECT_ROOT,
            env=subprocess_env(MLFLOW_TRACKING_URI=uri),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [e[-2000:] for e in errors]
    runs = runs_of(uri, project)
    parents = [r for r in runs if TAG_PIPELINE in r.data.tags]
    assert len(parents) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for parent in parents:
        children = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent.info.run_id]
        assert sorted(r.data.tags[TAG_STEP] for r in children) == ["basic_cleaning", "data_split", "download"]
    assert not runs_of(uri, "Default", f"tags.`{TAG_PIPELINE}` = 'true'")


# -- who may get in: PostgreSQL's password, MLflow's basic auth ---------------------------------
def psql() -> str | None:
    """The psql of the machine's PostgreSQL (next to the initdb the cluster uses)."""
    from mlpipe.tracking import postgres

    found = postgres.bin_dir() / "psql"
    return str(found) if found.exists() else shutil.which("psql")


def login(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`psql <url> -c 'SELECT current_user'` as another client would run it (never prompting)."""
    command = psql()
    if command is None:
        pytest.skip("no psql on this machine")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        [command, "-w", "-X", "-tA", url, "-c", "SELECT current_user"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_postgresql_refuses_a_login_without_the_password(tracking_server: server.Server) -> None:
    bare = tracking_server.database_url.partition("?")[0]  # the URL without its pgpass file
    refused = login(bare)
    assert refused.returncode != 0 and "no password supplied" in refused.stderr, refused.stderr
    wrong = login(bare, PGPASSWORD="not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr
    replication = login(f"{bare}?replication=database", PGPASSWORD="not-the-password")
    assert replication.returncode != 0 and "password authentication failed" in replication.stderr
    # With the pgpass file `make server` prints (named in the URL, or as PGPASSFILE), it works.
    assert login(tracking_server.database_url).stdout.strip() == "mlpipe"
    assert login(bare, PGPASSFILE=str(tracking_server.cluster.passfile)).stdout.strip() == "mlpipe"
    hba = (Path(tracking_server.folder) / "postgres" / "data" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and {rule[-1] for rule in rules} == {"scram-sha-256"}
    for secret in (tracking_server.cluster.passfile, tracking_server.admin_password_file):
        assert secret.stat().st_mode & 0o077 == 0, f"{secret} is readable by others"


def request_status(url: str, user: str | None = None, password: str | None = None) -> int:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_basic_auth_refuses_a_request_without_credentials_and_lets_the_admin_in(
    tracking_server: server.Server, tmp_path: Path
) -> None:
    url = f"{tracking_server.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=5"
    password = tracking_server.admin_password_file.read_text().strip()
    assert request_status(url) == 401
    assert request_status(url, server.ADMIN, "not-the-password") == 401
    assert request_status(url, server.ADMIN, password) == 200
    # main.py without them stops before anything starts, in one line.
    done = run_main(
        ["main.steps=download"],
        tracking_server.tracking_uri,
        tmp_path,
        MLFLOW_TRACKING_USERNAME="",
        MLFLOW_TRACKING_PASSWORD="",
    )
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: main: the MLflow tracking server at {tracking_server.tracking_uri} (MLFLOW_TRACKING_URI) "
        "refused a request without credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD (`make server AUTH=1` prints them)"
    ]


def test_no_password_is_printed_logged_or_in_a_url(
    tracking_server: server.Server, pipeline: dict[str, str]
) -> None:
    """The secrets stay in their 0600 files: not in what `make server` prints, its logs and
    state, nor in any parameter or tag of the runs (URLs name the pgpass file, not its content)."""
    database = tracking_server.cluster.passfile.read_text().strip().rsplit(":", 1)[1]
    admin = tracking_server.admin_password_file.read_text().strip()
    printed = subprocess.run(
        [sys.executable, "-m", "mlpipe.tracking.server", "env", "--folder", tracking_server.folder],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "export PGPASSFILE=" in printed and "export MLFLOW_TRACKING_PASSWORD=" in printed
    folder = Path(tracking_server.folder)
    places = {"printed exports": printed, "server.json": (folder / server.STATE_FILE).read_text()}
    places.update({p.name: p.read_text(errors="replace") for p in folder.glob("*.log")})
    places["postgres.log"] = (folder / "postgres" / "postgres.log").read_text(errors="replace")
    client = client_for(tracking_server.tracking_uri)
    for run in runs_of(tracking_server.tracking_uri, EXPERIMENT):
        places[f"run {run.info.run_id}"] = repr((run.data.params, run.data.tags))
    for run_id in pipeline.values():
        places[f"config of {run_id}"] = repr(client.get_run(run_id).data.params)
    for where, text in places.items():
        assert database not in text and admin not in text, f"a password in {where}"


def test_a_restarted_server_keeps_its_postgres_port_and_a_second_one_is_refused() -> None:
    """`make server-stop` then `make server`: PostgreSQL on the same port (an exported
    MLPIPE_DATABASE_URL still works); `make server SERVER_PORT=<another>` while it runs says
    where it runs instead of returning it silently."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-server-"))
    folder.chmod(0o755)
    port, other = free_port(), free_port()
    try:
        first = server.start(folder, port=port)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "mlpipe.tracking.server", *args, "--folder", str(folder)],
                capture_output=True,
                text=True,
                timeout=300,
            )

        again = cli("start", "--port", str(other))
        assert again.returncode == 1
        assert again.stderr.strip().splitlines() == [
            f"error: server: already running at http://127.0.0.1:{port} (pid {first.mlflow_pid}, data in "
            f"{folder.resolve()}); not starting another on port {other}: `make server-stop` first to "
            "start it again otherwise"
        ]
        same = cli("start", "--port", str(port))
        assert same.returncode == 0 and same.stdout.startswith(
            f"tracking server already running at http://127.0.0.1:{port} (pid {first.mlflow_pid}"
        ), same.stdout
        assert cli("stop").returncode == 0
        restarted = server.start(folder, port=port)
        assert restarted.postgres_port == first.postgres_port
        assert restarted.database_url == first.database_url
        assert store.unreachable(first.database_url) is None  # the URL exported before still works
    finally:
        server.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_that_trusted_everyone_gets_a_password_on_its_next_start() -> None:
    """A `.server/` made by an earlier version (initdb -A trust, no password): started now, the
    role gets a generated password and pg_hba.conf asks every connection for it."""
    from mlpipe.processes import stop_pid
    from mlpipe.tracking import postgres

    folder = Path(tempfile.mkdtemp(prefix="mlpipe-pg-"))
    folder.chmod(0o755)
    cluster = postgres.Cluster(folder / "postgres")
    cluster.folder.mkdir()
    user = postgres.owner()
    if user:
        os.chown(cluster.folder, user.pw_uid, user.pw_gid)
    made = cluster._run_as_owner(
        [str(postgres.bin_dir() / "initdb"), "-D", str(cluster.data), "-U", postgres.USER, "-A", "trust"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    pid = cluster.start(free_port())
    try:
        bare = postgres.url(cluster.port, "mlpipe")
        assert "no password supplied" in login(bare).stderr
        assert login(cluster.url(cluster.port, "mlpipe")).stdout.strip() == "mlpipe"
    finally:
        stop_pid(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(folder, ignore_errors=True)
