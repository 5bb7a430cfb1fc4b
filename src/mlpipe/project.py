"""The project being run: its root folder, where its results go, and paths relative to the root.

The root is the project `mlflow run` (or `python main.py`) was pointed at. The entry point (main.py,
or a component's run.py started on its own) names it in MLPIPE_PROJECT_ROOT for every process it
starts, so code, config and shipped data always come from that project, never from wherever an
installed copy of this package happens to live.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "MLPIPE_PROJECT_ROOT"
ENV_RESULTS = "MLPIPE_RESULTS_ROOT"
ENV_DATABASE = "MLPIPE_DATABASE_URL"  # the project's own tables (ledgers): `make server` makes one
MARKERS = ("MLproject", "config.yaml", "components")  # what makes a folder this kind of project


def is_project(folder: Path) -> bool:
    return all((folder / marker).exists() for marker in MARKERS)


def root() -> Path:
    """The project root: as the entry point set it, else the nearest project folder at or above
    the working directory (a notebook, the test suite)."""
    named = os.environ.get(ENV_ROOT)
    if named:
        return Path(named)
    here = Path.cwd().resolve()
    found = next((folder for folder in (here, *here.parents) if is_project(folder)), None)
    if found is None:
        raise RuntimeError(f"no project found: set {ENV_ROOT} or run from a folder with {', '.join(MARKERS)}")
    return found


def components_dir() -> Path:
    return root() / "components"


def conf_dir() -> Path:
    return root() / "conf"


def results_root() -> Path:
    """Where the default store and Hydra's output folders go (see `enter`)."""
    return Path(os.environ.get(ENV_RESULTS) or root())


def enter(project_root: Path, results: Path | None = None) -> None:
    """Make `project_root` the project of this process and of every process it starts: its
    `src/` comes first on their import path, its results go under `results` (the root when not
    given). Called once by each entry point."""
    os.environ[ENV_ROOT] = str(project_root)
    os.environ[ENV_RESULTS] = str(results or project_root)
    os.environ["PYTHONPATH"] = import_path(project_root)


def import_path(project_root: Path) -> str:
    """PYTHONPATH with the project's `src/` first (once), then what it already held."""
    src = str(project_root / "src")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return os.pathsep.join([src, *paths])


def launch_dir() -> Path:
    """The folder the `mlflow run` command that started this process was typed in (MLflow's own
    default store, `sqlite:///mlflow.db`, is relative to it), found among this process's
    ancestors; this process's working directory when there is none (or no /proc to ask)."""
    pid = launcher_pid()
    if pid is not None:
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            pass
    return Path.cwd()


def launcher_pid() -> int | None:
    """The `mlflow run` process among this process's ancestors (read from /proc), if any."""
    pid = os.getppid()
    for _ in range(16):
        try:
            argv = [Path(a.decode()).name for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:4]]
            if "run" in argv and ("mlflow" in argv[:3]):
                return pid
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
    return None


def resolve_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """An absolute path: relative ones are taken from `base` (the project root by default)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ((base or root()) / p).resolve()


def resolve_location(location: str) -> str:
    """A path or URL: URLs (`scheme://...`) as they are, paths made absolute from the root."""
    return location if "://" in location else str(resolve_path(location))
