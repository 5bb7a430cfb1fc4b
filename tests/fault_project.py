"""A project made of this checkout (linked, not copied) plus the `fault` component of
tests/components: a step that exits, is killed, crashes, runs out of memory or hangs on demand
(`+fault.how=...`), for the tests of the executors and of interrupts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import PROJECT_ROOT

FAULT = Path(__file__).resolve().parent / "components" / "fault"
LINKED = ("MLproject", "config.yaml", "conda.yml", "conf", "data", "src")


def fault_project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in LINKED:
        (folder / name).symlink_to(PROJECT_ROOT / name)
    shutil.copy2(PROJECT_ROOT / "main.py", folder / "main.py")  # main.py's project is where it lies
    components = folder / "components"
    components.mkdir()
    for component in (PROJECT_ROOT / "components").iterdir():
        (components / component.name).symlink_to(component)
    # A copy: MLflow finds the MLproject's `../../conda.yml` through the real path of the folder.
    shutil.copytree(FAULT, components / "fault", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def session_processes(session: int) -> list[int]:
    """The processes of a session (a command started with start_new_session=True, and everything
    it started), found in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]
