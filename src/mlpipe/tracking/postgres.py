"""A throwaway PostgreSQL cluster in a folder of the project, for the tracking server (and any
other table the project keeps): initialised once, started on 127.0.0.1 (on the port it had last
time, else a free one), stopped by the pid it was started with.

Every connection needs the role's password (scram-sha-256, loopback only, replication too): it is
generated with the cluster and kept in a 0600 pgpass file beside it, which the URLs name as
`?passfile=<path>` (libpq reads it there, or from PGPASSFILE), so no URL holds the secret itself.
A cluster made by an earlier version (trust for everyone) gets a password on its next start.

The binaries are the machine's (`initdb` on PATH or under /usr/lib/postgresql), else the ones the
`pgserver` package ships. PostgreSQL refuses to run as root: as root, the cluster belongs to the
`postgres` user the Debian packages create.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mlpipe.errors import StepError
from mlpipe.processes import stop_pid

USER = "mlpipe"  # the database role (password authentication, loopback only)
AUTH = "scram-sha-256"
PASSFILE = "pgpass"  # beside the cluster's data: the role's password, for libpq
PORT_FILE = "port"  # the port it last listened on: a restart keeps the URLs clients have
# pg_hba.conf once the role has a password: a password for every connection, replication too.
HBA = f"""# written by mlpipe (src/mlpipe/tracking/postgres.py): a password for every connection
local all all {AUTH}
host all all 127.0.0.1/32 {AUTH}
host all all ::1/128 {AUTH}
local replication all {AUTH}
host replication all 127.0.0.1/32 {AUTH}
host replication all ::1/128 {AUTH}
"""
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


def url(port: int, database: str, host: str = "127.0.0.1", passfile: Path | None = None) -> str:
    """A SQLAlchemy URL (`postgresql://` is psycopg 3 under SQLAlchemy 2), naming the pgpass file
    that holds the password, never the password."""
    base = f"postgresql://{USER}@{host}:{port}/{database}"
    return f"{base}?passfile={urllib.parse.quote(str(passfile), safe='/')}" if passfile else base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:`port` (connections of a server stopped a moment ago, in
    TIME_WAIT, do not count: servers bind with SO_REUSEADDR, as this test does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
    """host:port/database of a URL, without the user, a password or the options."""
    return database_url.partition("://")[2].partition("?")[0].rpartition("@")[2]


def write_private(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """A file only its owner can read (created so: never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as f:
        f.write(text)
    if owner:
        os.chown(path, owner.pw_uid, owner.pw_gid)


@dataclass
class Cluster:
    """A cluster in `folder` (data/ and postgres.log)."""

    folder: Path
    port: int | None = None  # where it listens, once started

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def passfile(self) -> Path:
        return self.folder / PASSFILE

    def url(self, port: int, database: str) -> str:
        return url(port, database, passfile=self.passfile)

    def kept_port(self) -> int | None:
        """The port it listened on last time, if any."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.folder / PORT_FILE).read_text())
        return None

    def choose_port(self, port: int | None) -> int:
        """`port` if given; else the one it had (clients keep their URLs), else a free one."""
        if port is not None:
            return port
        kept = self.kept_port()
        return kept if kept is not None and port_free(kept) else free_port()

    def write_passfile(self, password: str) -> None:
        write_private(self.passfile, f"127.0.0.1:*:*:{USER}:{password}\n")

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
        password = secrets.token_urlsafe(32)
        self.write_passfile(password)
        initdb_password = self.folder / ".initdb-password"  # initdb reads it as the cluster's owner
        write_private(initdb_password, password + "\n", user)
        try:
            done = self._run_as_owner(
                [
                    str(bin_dir() / "initdb"),
                    *("-D", str(self.data), "-U", USER, "-A", AUTH, "-E", "UTF8"),
                    f"--pwfile={initdb_password}",
                ],
                capture_output=True,
                text=True,
            )
        finally:
            initdb_password.unlink(missing_ok=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            hint = (
                f" (the cluster runs as '{user.pw_name}': every folder above it must let it in)"
                if user
                else ""
            )
            raise StepError(f"{WHAT}: initdb failed for {self.data}: {last}{hint}")

    def start(self, port: int | None = None, timeout_s: float = 60.0) -> int:
        """Start the postmaster on 127.0.0.1:`port` (TCP only; by default the port it had, else a
        free one: `self.port` says which); return its pid once it answers, with the project's
        databases created and the role's password set."""
        self.initialise()
        port = self.port = self.choose_port(port)
        (self.folder / PORT_FILE).write_text(str(port))
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
        legacy = not self.passfile.exists()  # made by an earlier version: trust, no password yet
        probe = url(port, "postgres") if legacy else self.url(port, "postgres")
        deadline = time.monotonic() + timeout_s
        while (why := answers(probe)) is not None:
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
        if legacy:
            self.require_password(port)
        self.create_databases(port)
        return process.pid

    def require_password(self, port: int) -> None:
        """A cluster that trusted every local user: give the role a password, keep it in the
        pgpass file, then demand it of every connection (pg_hba.conf, reloaded)."""
        import psycopg

        password = secrets.token_urlsafe(32)
        with psycopg.connect(url(port, "postgres"), autocommit=True) as connection:
            connection.execute(f"SET password_encryption = '{AUTH}'")
            connection.execute(f"ALTER ROLE \"{USER}\" PASSWORD '{password}'")
            self.write_passfile(password)
            hba = self.data / "pg_hba.conf"
            hba.write_text(HBA)
            user = owner()
            if user:
                os.chown(hba, user.pw_uid, user.pw_gid)
            connection.execute("SELECT pg_reload_conf()")

    def create_databases(self, port: int) -> None:
        import psycopg

        with psycopg.connect(self.url(port, "postgres"), autocommit=True) as connection:
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
