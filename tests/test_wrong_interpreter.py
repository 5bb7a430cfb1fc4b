"""`.venv/bin/mlflow run .` from a shell where the venv is not active: MLflow starts main.py with
the `python` on PATH, which lacks the project's packages; the run ends in one line saying how to
run it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, RUN_VARS

pytestmark = pytest.mark.slow
BARE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def test_mlflow_run_with_another_python_on_path_says_how_to_run_it(tmp_path: Path) -> None:
    if subprocess.run([BARE_PYTHON, "-c", "import hydra"], capture_output=True).returncode == 0:
        pytest.skip(f"{BARE_PYTHON} has hydra: no interpreter without the project's packages here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(BARE_PYTHON)  # the `python` a shell without the venv finds
    env = {k: v for k, v in os.environ.items() if k not in (*RUN_VARS, "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PATH=os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "run",
            ".",
            "--env-manager",
            "local",
            "-P",
            "steps=download",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert line == (
        f"error: main: {bin_dir / 'python'} cannot import hydra: it is not this project's environment "
        "(`mlflow run` runs main.py with the `python` on PATH); run `source .venv/bin/activate` first, "
        "or `make run`"
    ), done.stderr[-3000:]
