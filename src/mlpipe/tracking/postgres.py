"""A throwaway PostgreSQL cluster in a folder of the project, for the tracking server (and any
other table the project keeps): initialised once, started on a free port on 127.0.0.1, stopped
by the pid it was started with.

The binaries are the machine's (`initdb` on PATH or under /usr/lib/postgresql), else the ones the
`pgserver` package ships. PostgreSQL refuses to run as root: as root, the cluster belongs to the
`postgres` user the Debian packages create.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlpipe.errors import StepError
from mlpipe.processes import stop_pid

USER = "mlpipe"  # the database role (trust authentication, loopback only)
DATABASES = ("mlflow", "mlpipe")  # the tracking store's, and the project's own tables (ledgers)
OWNER_WHEN_ROOT = "postgres"
WHAT = "server"  # the prefix of error lines


def bin_dir() -> Path:
    """Where initdb and postgres are: the machine's installation first, then pgserver's."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if installed:
        return installed[0].parent
    try:
        import pgserver
    except ImportError:
        pass
    else:
        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bundled / "initdb").exists():
            return bundled
    raise StepError(
        f"{WHAT}: no PostgreSQL found (no initdb on PATH, under /usr/lib/postgresql, or from the pgserver "
        "package); install PostgreSQL or `pip install pgserver`"
    )


def owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OWNER_WHEN_ROOT)
    except KeyError:
        raise StepError(
            f"{WHAT}: PostgreSQL refuses to run as root and there is no '{OWNER_WHEN_ROOT}' user to run "
            f"it as; create one (useradd {OWNER_WHEN_ROOT}) or run as another user"
        ) from None


def url(port: int, database: str, host: str = "127.0.0.1") -> str:
    """A SQLAlchemy URL; `postgresql://` is psycopg 3 under SQLAlchemy 2."""
    return f"postgresql://{USER}@{host}:{port}/{database}"


def answers(database_url: str, timeout_s: float = 3.0) -> str | None:
    """None when the database accepts a connection, else why not (one line)."""
    import psycopg

    scheme, _, rest = database_url.partition("://")
    try:  # psycopg takes the URL without SQLAlchemy's `+driver`
        with psycopg.connect(f"{scheme.split('+')[0]}://{rest}", connect_timeout=max(1, int(timeout_s))):
            return None
    except psycopg.Error as e:
        return " ".join(str(e).split()) or type(e).__name__


def where(database_url: str) -> str:
    """host:port/database of a URL, without the user or a password."""
    return database_url.partition("://")[2].rpartition("@")[2]


@dataclass
class Cluster:
    """A cluster in `folder` (data/ and postgres.log)."""

    folder: Path

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    def _run_as_owner(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        user = owner()
        return subprocess.run(
            command, user=user.pw_uid if user else None, group=user.pw_gid if user else None, **kwargs
        )  # type: ignore[call-overload]

    def initialise(self) -> None:
        """Create the cluster once (about a second)."""
        if (self.data / "PG_VERSION").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        user = owner()
        if user:
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        done = self._run_as_owner(
            [str(bin_dir() / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            hint = (
                f" (the cluster runs as '{user.pw_name}': every folder above it must let it in)"
                if user
                else ""
            )
            raise StepError(f"{WHAT}: initdb failed for {self.data}: {last}{hint}")

    def start(self, port: int, timeout_s: float = 60.0) -> int:
        """Start the postmaster on 127.0.0.1:`port` (TCP only); return its pid once it answers,
        with the project's databases created."""
        self.initialise()
        user = owner()
        with self.log_file.open("ab") as log:
            if user:
                os.chown(self.log_file, user.pw_uid, user.pw_gid)
            process = subprocess.Popen(
                [
                    str(bin_dir() / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",  # TCP only: no socket file to place or clean up
                ],
                stdout=log,
                stderr=log,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                start_new_session=True,  # not stopped by the shell's Ctrl-C; stopped by pid
            )
        deadline = time.monotonic() + timeout_s
        while (why := answers(url(port, "postgres"))) is not None:
            if process.poll() is not None:
                raise StepError(
                    f"{WHAT}: PostgreSQL exited at start (code {process.returncode}): {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                stop_pid(process.pid)
                raise StepError(
                    f"{WHAT}: PostgreSQL on port {port} did not answer within {timeout_s:.0f} s: {why}"
                )
            time.sleep(0.2)
        self.create_databases(port)
        return process.pid

    def create_databases(self, port: int) -> None:
        import psycopg

        with psycopg.connect(url(port, "postgres"), autocommit=True) as connection:
            present = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in present:
                    connection.execute(f'CREATE DATABASE "{name}"')

    def log_tail(self) -> str:
        return last_line(self.log_file)


def last_line(log: Path) -> str:
    """The last line of a log: what a one-line error quotes of a server that did not start."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else f"{log} is empty"
