"""`make server`: a shared tracking store for a team or a cluster, on one machine.

A PostgreSQL cluster (postgres.py) holds the runs and the Model Registry; `mlflow server` on
127.0.0.1 serves them and proxies the artifacts (stored under the folder's artifacts/), so no
client needs a path on the server's disk. Both are started detached and recorded with their pids
in `<folder>/server.json`; `stop` stops exactly those pids.

    python -m mlpipe.tracking.server start [--folder .server] [--port 5000]
    python -m mlpipe.tracking.server stop  [--folder .server]
    python -m mlpipe.tracking.server env   [--folder .server]   # the exports for a shell
"""

from __future__ import annotations

import argparse
import json
import os
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
from mlpipe.tracking.postgres import WHAT, last_line

STATE_FILE = "server.json"
HEALTH_TIMEOUT_S = 180.0  # `mlflow server` on PostgreSQL takes about 25 s on 2 cores


@dataclass
class Server:
    folder: str
    postgres_pid: int
    postgres_port: int
    mlflow_pid: int
    port: int

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The project's own database (not MLflow's): where a ledger on PostgreSQL goes."""
        return postgres.url(self.postgres_port, "mlpipe")

    @property
    def backend_url(self) -> str:
        return postgres.url(self.postgres_port, "mlflow")

    def exports(self) -> str:
        database = f"export {project.ENV_DATABASE}={self.database_url}"
        return f"export MLFLOW_TRACKING_URI={self.tracking_uri}\n{database}"

    def save(self) -> None:
        (Path(self.folder) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Server | None:
        path = folder / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def running(self) -> bool:
        return alive(self.postgres_pid) and alive(self.mlflow_pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def mlflow_command(backend: str, artifacts: Path, port: int, workers: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
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


def start(folder: Path, port: int = 5000, workers: int = 2) -> Server:
    """Start PostgreSQL and `mlflow server` (or find them running); return the server."""
    folder = folder.resolve()
    existing = Server.load(folder)
    if existing and existing.running():
        return existing
    if existing:  # one of the two died: stop the other, start both again
        stop(folder)
    if port_taken(port):
        raise StepError(
            f"{WHAT}: port {port} on 127.0.0.1 is in use; pick another with --port (make server PORT=...)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    cluster = postgres.Cluster(folder / "postgres")
    postgres_port = free_port()
    postgres_pid = cluster.start(postgres_port)
    server = Server(str(folder), postgres_pid, postgres_port, 0, port)
    (folder / "artifacts").mkdir(exist_ok=True)
    with (folder / "mlflow.log").open("ab") as log:
        process = subprocess.Popen(
            mlflow_command(server.backend_url, folder / "artifacts", port, workers),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            # MLflow's background job runner (GenAI scorers) would start eight more processes.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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
                f"{last_line(folder / 'mlflow.log')}"
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
    args = parser.parse_args(argv)
    folder = Path(args.folder) if args.folder else project.root() / ".server"
    try:
        if args.action == "start":
            started = time.monotonic()
            server = start(folder, args.port, args.workers)
            print(
                f"tracking server {server.tracking_uri} (pid {server.mlflow_pid}), PostgreSQL on port "
                f"{server.postgres_port} (pid {server.postgres_pid}), data in {server.folder}; "
                f"up in {time.monotonic() - started:.0f} s. In your shell:\n{server.exports()}"
            )
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
