"""`make new-step` in a copy of the project: a name that cannot be a new step is refused in one
line before anything is written, and a failure half-way (the derivation) leaves nothing behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import subprocess_env
from tests.test_project_root import commit, copy_checkout, git

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout copied into a git repo of its own, with this environment as its .venv."""
    root = copy_checkout(tmp_path_factory.mktemp("copy") / "project")
    (root / ".venv").symlink_to(Path(sys.executable).parents[1])
    with (root / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".venv\n")  # a link: .gitignore's `.venv/` names a folder
    return root


def new_step(root: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    """`make new-step NAME=...` as a user types it (the venv taken as installed)."""
    env = subprocess_env()
    env.pop("MLPIPE_PROJECT_ROOT", None)  # the copy is the project: make runs in it
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):  # under `make test`: a make of its own, as typed
        env.pop(name, None)
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "new-step", *variables],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said, without make's own `make: *** ... Error 1`."""
    return [line for line in done.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("train", "step name 'train' is taken: components/train_sklearn and components/train_torch"),
        ("basic_cleaning", "components/basic_cleaning exists (the component of step 'basic_cleaning')"),
        ("get_data", "components/get_data exists (the component of step 'download')"),
        ("main", "a top-level key of config.yaml"),
        ("dataset", "the config group conf/dataset/"),
        ("all", "'all' means every step in main.steps"),
        ("class", "step name 'class' is a Python keyword"),
        ("a b", "step name 'a b': expected a lower-case identifier"),
        ("Row", "step name 'Row': expected a lower-case identifier"),
        ("-x", "step name '-x': expected a lower-case identifier"),
    ],
)
def test_a_name_that_cannot_be_a_new_step_writes_nothing(project: Path, name: str, says: str) -> None:
    done = new_step(project, f"NAME={name}")
    assert done.returncode != 0
    assert error_lines(done) == [error_lines(done)[0]] and error_lines(done)[0].startswith(
        "error: new-step: "
    ), done.stderr
    assert says in done.stderr
    assert git(project, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        (["NAME=row_report", "WRITES=clean_data"], "components/basic_cleaning writes that artifact already"),
        (["NAME=row_report", "READS=x y"], "READS='x y': expected an artifact name"),
    ],
)
def test_artifact_names_are_checked_first(project: Path, variables: list[str], says: str) -> None:
    done = new_step(project, *variables)
    assert done.returncode != 0 and len(error_lines(done)) == 1 and says in done.stderr, done.stderr
    assert git(project, "status", "--porcelain") == ""


def test_a_failure_half_way_undoes_what_was_written(project: Path) -> None:
    """The derivation fails after run.py, the test and config.yaml are written (the README lost
    the step table's end marker): all three are undone, the README is as it was."""
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("<!-- end of steps -->", ""))
    commit(project, "a README without the step table's end marker")
    try:
        done = new_step(project, "NAME=row_report")
        assert done.returncode != 0
        [line] = error_lines(done)
        assert line.startswith("error: new-step: deriving the MLproject files and README failed")
        assert "nothing was written" in line
        assert git(project, "status", "--porcelain", "--ignored", "components", "tests") == ""
        assert git(project, "status", "--porcelain") == ""
    finally:
        git(project, "reset", "-q", "--hard", "HEAD~1")


def test_a_new_step_is_written_once_and_the_config_still_loads(project: Path) -> None:
    done = new_step(project, "NAME=row_report")
    assert done.returncode == 0, done.stderr
    config = OmegaConf.load(project / "config.yaml")  # refuses a duplicate key
    assert config.row_report == {}
    again = new_step(project, "NAME=row_report")
    assert again.returncode != 0 and "components/row_report exists" in again.stderr
    assert (project / "config.yaml").read_text().count("\nrow_report:") == 1
