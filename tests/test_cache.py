"""The step cache: what goes into a step's key, and which runs may be reused."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow.tracking import MlflowClient

from mlpipe.pipeline import cache
from tests.conftest import COMPONENTS_DIR

BASE = {"step": "data_split", "component": "data_split", "parameters": {"test_size": 0.2}}


def key(**change) -> str:
    args = {
        **BASE,
        "input_digests": {"clean_data": "d1"},
        "code": "c1",
        "packages": {"pandas": "3"},
        **change,
    }
    return cache.step_key(**args)


def test_each_part_of_the_key_matters():
    base = key()
    assert key() == base
    assert key(parameters={"test_size": 0.3}) != base
    assert key(input_digests={"clean_data": "d2"}) != base
    assert key(code="c2") != base
    assert key(packages={"pandas": "4"}) != base
    assert key(step="other") != base


def test_code_digest_follows_the_component_files(tmp_path: Path):
    shutil.copytree(COMPONENTS_DIR / "data_split", tmp_path / "data_split")
    before = cache.code_digest("data_split", tmp_path)
    assert before == cache.code_digest("data_split", COMPONENTS_DIR)  # same files, same digest
    with (tmp_path / "data_split" / "run.py").open("a") as f:
        f.write("\n# a change\n")
    cache.code_digest.cache_clear()
    assert cache.code_digest("data_split", tmp_path) != before


def test_a_file_parameter_counts_by_its_content(tmp_path: Path):
    a, b = tmp_path / "a" / "dataset.yaml", tmp_path / "b" / "dataset.yaml"
    for path, text in ((a, "x: 1"), (b, "x: 1")):
        path.parent.mkdir()
        path.write_text(text)
    assert key(parameters={"dataset_config": str(a)}) == key(parameters={"dataset_config": str(b)})
    b.write_text("x: 2")
    assert key(parameters={"dataset_config": str(a)}) != key(parameters={"dataset_config": str(b)})


def test_urls_are_never_cached():
    assert cache.cacheable({"source": "/data/file.csv"})
    assert not cache.cacheable({"source": "https://example.org/file.csv"})


def test_packages_of_the_project_are_in_the_key():
    versions = cache.package_versions()
    assert {"python", "mlflow", "scikit-learn", "pandas"} <= versions.keys()


def test_only_finished_original_runs_are_reused(experiment_id: str):
    client = MlflowClient()

    def run_with(status: str, **tags: str) -> str:
        run = client.create_run(experiment_id, tags={cache.TAG_KEY: "k", **tags})
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    run_with("FAILED")
    run_with("KILLED")
    run_with("RUNNING")
    assert cache.find_reusable(client, experiment_id, "k") is None
    good = run_with("FINISHED")
    run_with("FINISHED", **{cache.TAG_REUSED: good})  # a reuse record points at the original
    assert cache.find_reusable(client, experiment_id, "k").info.run_id == good
    assert cache.find_reusable(client, experiment_id, "other") is None
