"""The project being run is the root: its code, config and shipped data, whatever copy of the
package is installed; `mlflow run git://<host>/<repo> -v <tag>` runs that tag's code and config."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking.runs import TAG_COMMIT, TAG_PARENT, TAG_STEP
from tests.conftest import PROJECT_ROOT, mlflow_run, subprocess_env


def copy_checkout(dest: Path) -> Path:
    """This checkout's files as they are now (tracked and new, not ignored) in a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q", "-b", "main")
    commit(dest, "copy")
    return dest


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()


def commit(folder: Path, message: str) -> str:
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD")


def pipeline_and_step_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    return client.search_runs([found.experiment_id])


def test_a_second_checkout_runs_its_own_config_and_code(tmp_path: Path) -> None:
    """A dataset added to another checkout is found when that checkout's main.py runs with this
    environment (whose installed package is this checkout's), and its commit is recorded."""
    other = copy_checkout(tmp_path / "other")
    config = (other / "conf" / "dataset" / "penguins.yaml").read_text()
    (other / "conf" / "dataset" / "penguins_copy.yaml").write_text(
        config.replace("name: penguins", "name: penguins_copy")
    )
    head = commit(other, "a dataset only this checkout has")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [
            sys.executable,
            str(other / "main.py"),
            "dataset=penguins_copy",
            "main.steps=download",
            "main.executor=inprocess",
        ],
        cwd=tmp_path,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pipeline_and_step_runs(uri, "penguins_copy")
    assert {r.data.tags.get(TAG_STEP, "pipeline") for r in runs} == {"pipeline", "download"}
    assert {r.data.tags[TAG_COMMIT] for r in runs} == {head}


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A repository of this project with tags v1 and v2 (configs differ), served by `git daemon`
    on 127.0.0.1 (MLflow fetches shallow, which git's plain HTTP protocol cannot serve)."""
    work = copy_checkout(tmp_path / "work")
    config = work / "config.yaml"
    tags = {}
    for tag, test_size in (("v1", "0.2"), ("v2", "0.25")):
        text = config.read_text()
        config.write_text(text.replace("  test_size: 0.2\n", f"  test_size: {test_size}\n", 1))
        config.write_text(
            config.read_text().replace("experiment_name: development", f"experiment_name: {tag}")
        )
        tags[tag] = commit(work, f"release {tag}")
        git(work, "tag", tag)
        config.write_text(text)
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(work), str(served / "project.git"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={served}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(
            ["git", "ls-remote", f"git://127.0.0.1:{port}/project.git"], capture_output=True
        ).returncode:
            assert daemon.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.2)
        yield f"git://127.0.0.1:{port}/project.git", tags
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_run_of_a_git_tag_runs_that_tags_code_and_config(tmp_path: Path, git_server) -> None:
    url, tags = git_server
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    options = "dataset=penguins main.executor=mlflow_run"  # MLflow itself runs each component
    steps = "download,basic_cleaning"
    done = mlflow_run(
        [url, "-v", "v2", "--env-manager", "local", "-P", f"steps={steps}", "-P", f"hydra_options={options}"],
        uri,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pipeline_and_step_runs(uri, "penguins")
    [pipeline] = [r for r in runs if TAG_STEP not in r.data.tags]
    assert pipeline.data.tags["mlpipe.group"] == "v2"  # v2's config
    steps_run = [r for r in runs if r.data.tags.get(TAG_PARENT) == pipeline.info.run_id]
    assert sorted(r.data.tags[TAG_STEP] for r in steps_run) == sorted(steps.split(","))
    assert {r.data.tags[TAG_COMMIT] for r in [pipeline, *steps_run]} == {tags["v2"]}

    # No MLFLOW_TRACKING_URI: MLflow's own default store is relative to where the command was
    # typed, not to the temporary folder it fetched the project into.
    launched_in = tmp_path / "elsewhere"
    launched_in.mkdir()
    done = mlflow_run(
        [
            url,
            "-v",
            "v1",
            "--env-manager",
            "local",
            "-P",
            "steps=download",
            "-P",
            "hydra_options=dataset=penguins",
        ],
        "",
        cwd=launched_in,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pipeline_and_step_runs(f"sqlite:///{launched_in / 'mlflow.db'}", "penguins")
    [pipeline] = [r for r in runs if TAG_STEP not in r.data.tags]
    assert pipeline.data.tags["mlpipe.group"] == "v1"
    assert {r.data.tags[TAG_COMMIT] for r in runs} == {tags["v1"]}
    assert (launched_in / "mlartifacts").is_dir()
