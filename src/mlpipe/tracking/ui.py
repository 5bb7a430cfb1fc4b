"""`make ui`: the MLflow UI on the project's store, at the project's experiment on the training
view (`python -m mlpipe.tracking.ui [hydra overrides]`).

Prints the address of the experiment's page, serves the UI when the store is a local database
(a tracking server serves its own), and opens a browser where there is a screen to open it on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline.config import check_overrides, load
from mlpipe.tracking import store


def experiment_page(overrides: list[str]) -> tuple[str, str | None]:
    """(the experiment's name, the address of its page, None when there is no such experiment)
    for the config the overrides compose."""
    name = str(load(overrides).main.project_name)
    client = MlflowClient(store.configure())
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return name, None
    store.mark_kind(client, experiment)  # a store made before experiments were tagged
    return name, store.ui_url(experiment.experiment_id)


def wait_until_up(base: str, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def can_open_browser() -> bool:
    """A desktop to open a browser on (on a headless machine a browser would only fail)."""
    screen = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return sys.platform in ("darwin", "win32") or bool(screen)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(uri: str, url: str) -> int:
    """Run `mlflow ui` on the store until it stops (Ctrl-C, or SIGTERM to this process)."""
    address = urlparse(url)
    host, port = str(address.hostname), address.port or 80
    if not port_free(host, port):
        print(
            f"error: ui: {address.netloc} is in use (another MLflow UI?); "
            f"expected a free port: set {store.ENV_UI}=http://127.0.0.1:<port>",
            file=sys.stderr,
        )
        return 1
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    where = ["--host", host, "--port", str(port), "--workers", "1"]
    # Its own process group: stopping this process stops the server and its worker (one: a UI for
    # one user, which starts in half the time of two).
    # The server logs to stderr, so that stdout says only where the UI is.
    server = subprocess.Popen(
        [mlflow, "ui", "--backend-store-uri", uri, *where], stdout=sys.stderr, start_new_session=True
    )

    def stop() -> None:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        base = f"{address.scheme}://{address.netloc}"
        if wait_until_up(base, server):
            print(f"MLflow UI ready: {url}", flush=True)
            if can_open_browser():
                webbrowser.open(url)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        server.wait()


def main(argv: list[str]) -> int:
    project.enter(project.root())
    try:
        check_overrides(argv)
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name, url = experiment_page(argv)
    uri = store.tracking_uri()
    if url is None:
        url = f"{store.ui_base()}/"
        print(f"no experiment '{name}' in {uri} yet (`make run` makes it); the UI: {url}", flush=True)
    else:
        print(f"experiment '{name}' (training view): {url}", flush=True)
    if uri.startswith(("http://", "https://")):
        return 0  # the tracking server serves the UI itself
    return serve(uri, url)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
