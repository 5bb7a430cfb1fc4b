"""The dataset file's schema: every shipped dataset passes it, each kind of mistake is one line
naming the file and the key, and the README's reference is the schema's."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlpipe.data import dataset_schema, kinds
from mlpipe.errors import StepError
from mlpipe.pipeline.derived import DATASET_BEGIN, DATASET_END
from tests.conftest import DATASETS, PROJECT_ROOT, subprocess_env

WHERE = "dataset config mine.yaml"


def dataset(name: str) -> dict[str, Any]:
    return yaml.safe_load((DATASETS / f"{name}.yaml").read_text())


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(StepError) as failed:
        dataset_schema.check(config, WHERE)
    message = str(failed.value)
    assert message.startswith(f"{WHERE}: ") and "\n" not in message
    return message.removeprefix(f"{WHERE}: ")


@pytest.mark.parametrize("name", sorted(p.stem for p in DATASETS.glob("*.yaml")))
def test_every_shipped_dataset_passes(name: str) -> None:
    assert dataset_schema.check(dataset(name), WHERE).name == name


def test_every_kind_has_a_schema() -> None:
    assert sorted(dataset_schema.BY_KIND) == kinds.names()


def edited(name: str, change: Any) -> dict[str, Any]:
    config = copy.deepcopy(dataset(name))
    change(config)
    return config


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("nyc_airbnb", lambda c: c.pop("metrics"), "missing key 'metrics' (how models of this dataset"),
        (
            "nyc_airbnb",
            lambda c: c["metrics"].pop("test"),
            "missing key 'metrics.test' (logged by test_model",
        ),
        ("nyc_airbnb", lambda c: c.pop("source"), "missing key 'source'"),
        (
            "nyc_airbnb",
            lambda c: c["checks"].update(rowz=[1, 2]),
            "unknown key 'checks.rowz'; expected one of rows, categories, ranges, drift_columns, ks_columns",
        ),
        ("penguins", lambda c: c.update(metric={}), "unknown key 'metric'; expected one of name, kind,"),
        (
            "nyc_airbnb",
            lambda c: c["checks"].update(rows="many"),
            "key 'checks.rows' is 'many'; expected a list",
        ),
        (
            "nyc_airbnb",
            lambda c: c["cleaning"]["bounds"].update(price=["ten", 350]),
            "key 'cleaning.bounds.price[0]' is 'ten'; expected a valid number",
        ),
        (
            "nyc_airbnb",
            lambda c: c["columns"]["categorical"].append("latitude"),
            "key 'columns': column 'latitude' is named twice (numeric and categorical)",
        ),
        (
            "penguins",
            lambda c: c["columns"]["numeric"].append("species"),
            "key 'columns': column 'species' is named twice (target and numeric)",
        ),
        (
            "nyc_airbnb",
            lambda c: c.update(task="forecast"),
            "key 'task' is 'forecast'; expected 'regression' or",
        ),
        (
            "nyc_airbnb",
            lambda c: c.update(kind="text"),
            "key 'kind' is 'text'; expected one of images, table",
        ),
        (
            "digits",
            lambda c: c["image"].update(size=[16]),
            "key 'image.size' is [16]; expected 2 or more items",
        ),
        (
            "digits",
            lambda c: c["checks"].update(ranges={}),
            "unknown key 'checks.ranges'; expected one of rows,",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_the_key(name: str, change: Any, problem: str) -> None:
    assert refused(edited(name, change)).startswith(problem)


def test_stratify_by_may_be_left_out_and_defaults_fill_the_sections() -> None:
    from mlpipe.data.spec import DatasetSpec

    config = edited("penguins", lambda c: (c.pop("stratify_by"), c.pop("cleaning"), c["checks"].pop("rows")))
    spec = DatasetSpec.from_dict(config)
    assert spec.stratify_by is None and spec.cleaning == {"bounds": {}, "drop_duplicates": True}
    assert spec.checks["rows"] == [1, None]


def test_the_readme_reference_is_the_schemas() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split(DATASET_BEGIN)[1].split(DATASET_END)[0]
    assert block.strip() == dataset_schema.reference().strip()  # else: make contracts
    for key in ("`metrics.validation`", "`columns.ordinal`", "`image.size`", "`checks.min_contrast`"):
        assert key in block


@pytest.fixture
def project_with(tmp_path: Path):
    """A copy of the project (code and shipped configs linked) with one more dataset file."""

    def make(name: str, config: dict[str, Any]) -> Path:
        root = tmp_path / "project"
        (root / "conf" / "dataset").mkdir(parents=True)
        for file in ("main.py", "config.yaml", "MLproject"):
            shutil.copy(PROJECT_ROOT / file, root / file)
        for folder in ("components", "src", "data"):
            (root / folder).symlink_to(PROJECT_ROOT / folder)
        for group in ("model", "hparams_search"):
            (root / "conf" / group).symlink_to(PROJECT_ROOT / "conf" / group)
        (root / "conf" / "dataset" / "nyc_airbnb.yaml").symlink_to(DATASETS / "nyc_airbnb.yaml")
        (root / "conf" / "dataset" / f"{name}.yaml").write_text(yaml.safe_dump(config))
        return root

    return make


def main_py(root: Path, uri: str, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "main.py"), *overrides],
        cwd=root,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, MLPIPE_PROJECT_ROOT=str(root)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_dataset_file_without_metrics_is_one_line_through_main(
    project_with, fresh_tracking_uri: str
) -> None:
    root = project_with("mine", edited("nyc_airbnb", lambda c: c.pop("metrics")))
    done = main_py(root, fresh_tracking_uri, "dataset=mine")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines == [
        f"error: main: {root / 'conf' / 'dataset' / 'mine.yaml'}: missing key 'metrics' "
        "(how models of this dataset are compared)"
    ]


@pytest.mark.slow
def test_a_dataset_file_without_stratify_by_runs(project_with, fresh_tracking_uri: str) -> None:
    root = project_with("mine", edited("penguins", lambda c: c.pop("stratify_by")))
    done = main_py(
        root,
        fresh_tracking_uri,
        "dataset=mine",
        "main.steps='download,basic_cleaning,data_split'",
        "main.executor=inprocess",
    )
    assert done.returncode == 0, done.stderr[-3000:]
