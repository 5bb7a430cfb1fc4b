"""`make server`: a shared tracking store for a team or a cluster, on one machine.

A PostgreSQL cluster (postgres.py) holds the runs and the Model Registry; `mlflow server` on
127.0.0.1 serves them and proxies the artifacts (stored under the folder's artifacts/), so no
client needs a path on the server's disk. Both are started detached and recorded with their pids
in `<folder>/server.json`; `stop` stops exactly those pids. PostgreSQL asks every client for its
password (kept in a 0600 pgpass file that the URLs name, never hold); with `--auth`, so does
`mlflow server` (MLflow's basic-auth app: an admin whose generated password is kept 0600 too).

    python -m mlpipe.tracking.server start [--folder .server] [--port 5000] [--auth]
    python -m mlpipe.tracking.server stop  [--folder .server]
    python -m mlpipe.tracking.server env   [--folder .server]   # the exports for a shell
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.processes import alive, stop_group, stop_pid
from mlpipe.tracking import postgres, store
from mlpipe.tracking.postgres import WHAT, free_port, last_line, write_private

__all__ = ["Server", "free_port", "start", "stop"]

STATE_FILE = "server.json"
HEALTH_TIMEOUT_S = 180.0  # `mlflow server` on PostgreSQL takes about 25 s on 2 cores
AUTH_CACHE_S = 60  # how long a worker trusts a credential it checked
AUTH_CONFIG = "basic_auth.ini"  # MLflow's basic-auth app's config (MLFLOW_AUTH_CONFIG_PATH), 0600
ADMIN = "admin"
ADMIN_PASSWORD_FILE = "mlflow_admin_password"  # 0600: what MLFLOW_TRACKING_PASSWORD reads
FLASK_SECRET_FILE = "flask_secret_key"  # 0600: the basic-auth app's CSRF key, kept across restarts


@dataclass
class Server:
    folder: str
    postgres_pid: int
    postgres_port: int
    mlflow_pid: int
    port: int
    auth: bool = False  # MLflow's basic auth in front of the server

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cluster(self) -> postgres.Cluster:
        return postgres.Cluster(Path(self.folder) / "postgres")

    @property
    def database_url(self) -> str:
        """The project's own database (not MLflow's): where a ledger on PostgreSQL goes."""
        return self.cluster.url(self.postgres_port, "mlpipe")

    @property
    def backend_url(self) -> str:
        return self.cluster.url(self.postgres_port, "mlflow")

    @property
    def admin_password_file(self) -> Path:
        return Path(self.folder) / ADMIN_PASSWORD_FILE

    def client_environment(self) -> dict[str, str]:
        """What a client needs, the password of the basic auth included (read from its file)."""
        env = {
            store.ENV_URI: self.tracking_uri,
            project.ENV_DATABASE: self.database_url,
            "PGPASSFILE": str(self.cluster.passfile),  # for psql and any libpq client
        }
        if self.auth:
            env["MLFLOW_TRACKING_USERNAME"] = ADMIN
            env["MLFLOW_TRACKING_PASSWORD"] = self.admin_password_file.read_text().strip()
        return env

    def exports(self) -> str:
        """`export NAME=value` lines for a shell: no secret is printed, the password of the basic
        auth is read from its 0600 file by the shell."""
        lines = [
            f"export {name}={shlex.quote(value)}"
            for name, value in self.client_environment().items()
            if name != "MLFLOW_TRACKING_PASSWORD"
        ]
        if self.auth:
            lines.append(
                f'export MLFLOW_TRACKING_PASSWORD="$(cat {shlex.quote(str(self.admin_password_file))})"'
            )
        return "\n".join(lines)

    def describe(self) -> str:
        auth = ", basic auth" if self.auth else ""
        return f"{self.tracking_uri} (pid {self.mlflow_pid}{auth}, data in {self.folder})"

    def save(self) -> None:
        (Path(self.folder) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Server | None:
        path = folder / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def running(self) -> bool:
        return alive(self.postgres_pid) and alive(self.mlflow_pid)


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def mlflow_command(backend: str, artifacts: Path, port: int, workers: int, auth: bool = False) -> list[str]:
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        *(["--app-name", "basic-auth"] if auth else []),
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),  # proxied: clients up- and download through the server
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def kept_secret(path: Path) -> str:
    """A random secret made once and kept in a 0600 file."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def auth_config(folder: Path) -> Path:
    """MLflow's basic-auth config: its users in a SQLite file beside it, an admin whose password
    is generated once (kept 0600: MLflow reads it only while the user store is empty)."""
    password = kept_secret(folder / ADMIN_PASSWORD_FILE)
    config = folder / AUTH_CONFIG
    write_private(
        config,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Every request checks its password with a slow hash (scrypt, ~0.16 s of CPU here): a
        # pipeline makes hundreds. A credential checked once is trusted for a minute (MLflow's
        # own opt-in cache); a changed password reaches every worker within that minute.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_S}\n",
    )
    return config


def error_line(log: Path) -> str:
    """The last exception a log holds (`Type: message`), else its last line."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return errors[-1] if errors else last_line(log)


def already_running(existing: Server, port: int, auth: bool) -> StepError:
    wanted = f"port {port}{' with basic auth' if auth else ''}"
    return StepError(
        f"{WHAT}: already running at {existing.describe()}; not starting another on {wanted}: "
        "`make server-stop` first to start it again otherwise"
    )


def start(folder: Path, port: int = 5000, workers: int = 2, auth: bool = False) -> Server:
    """Start PostgreSQL and `mlflow server` (or find them running as asked: on `port`, with or
    without basic auth; otherwise say so); return the server."""
    folder = folder.resolve()
    existing = Server.load(folder)
    if existing and existing.running():
        if (existing.port, existing.auth) != (port, auth):
            raise already_running(existing, port, auth)
        return existing
    if existing:  # one of the two died: stop the other, start both again
        stop(folder)
    if port_taken(port):
        raise StepError(
            f"{WHAT}: port {port} on 127.0.0.1 is in use; pick another with --port "
            "(make server SERVER_PORT=...)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    cluster = postgres.Cluster(folder / "postgres")
    postgres_pid = cluster.start()  # on the port it had last time, when it is free
    assert cluster.port is not None
    server = Server(str(folder), postgres_pid, cluster.port, 0, port, auth)
    (folder / "artifacts").mkdir(exist_ok=True)
    # MLflow's background job runner (GenAI scorers) would start eight more processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if auth:
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(folder))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = kept_secret(folder / FLASK_SECRET_FILE)
    with (folder / "mlflow.log").open("ab") as log:
        process = subprocess.Popen(
            mlflow_command(server.backend_url, folder / "artifacts", port, workers, auth),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,  # its own process group: the workers stop with it
        )
    server.mlflow_pid = process.pid
    server.save()
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while (why := store.unreachable(server.tracking_uri)) is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            stop(folder)
            state = f"exited with code {process.returncode}" if process.returncode is not None else why
            raise StepError(
                f"{WHAT}: mlflow server on port {port} did not come up ({state}): "
                f"{error_line(folder / 'mlflow.log')}"
            )
        time.sleep(0.5)
    return server


def stop(folder: Path) -> Server | None:
    """Stop what `start` started in `folder`, by the recorded pids; keep the data."""
    server = Server.load(folder.resolve())
    if server is None:
        return None
    if server.mlflow_pid:
        stop_group(server.mlflow_pid)
    stop_pid(server.postgres_pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    (Path(server.folder) / STATE_FILE).unlink(missing_ok=True)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.tracking.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "env"])
    parser.add_argument("--folder", help="where data and logs go (default: .server/ in the project)")
    parser.add_argument("--port", type=int, default=5000, help="the tracking server's port on 127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="the tracking server's worker processes")
    parser.add_argument("--auth", action="store_true", help="MLflow's basic auth (an admin user) in front")
    args = parser.parse_args(argv)
    folder = Path(args.folder) if args.folder else project.root() / ".server"
    try:
        if args.action == "start":
            started = time.monotonic()
            existing = Server.load(folder.resolve())
            server = start(folder, args.port, args.workers, args.auth)
            if existing is not None and existing.running():
                print(f"tracking server already running at {server.describe()}. In your shell:")
            else:
                print(
                    f"tracking server {server.tracking_uri} (pid {server.mlflow_pid}"
                    f"{', basic auth' if server.auth else ''}), PostgreSQL on port "
                    f"{server.postgres_port} (pid {server.postgres_pid}), data in {server.folder}; "
                    f"up in {time.monotonic() - started:.0f} s. In your shell:"
                )
            print(server.exports())
        elif args.action == "stop":
            stopped = stop(folder)
            print(
                f"stopped the tracking server (pid {stopped.mlflow_pid}) "
                f"and PostgreSQL (pid {stopped.postgres_pid})"
                if stopped
                else f"no server recorded in {folder}"
            )
        else:
            server = Server.load(folder.resolve())
            if server is None or not server.running():
                raise StepError(f"{WHAT}: no server running from {folder}; start one with `make server`")
            print(server.exports())
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
