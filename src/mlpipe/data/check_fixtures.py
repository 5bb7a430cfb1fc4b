"""The fixtures data tests ask for (a pytest plugin): the data, the reference data, their drift
summaries, the dataset spec, the drift thresholds, and a dict of measured values.

data_check registers this plugin and runs the kind's tests (`kinds/<kind>/checks.py`) and the
tests every kind runs (`data/checks.py`). A data scientist runs the same tests by hand:

    pytest -p mlpipe.data.check_fixtures src/mlpipe/data/checks.py src/mlpipe/data/kinds/table/checks.py \
        --data clean.parquet --ref ref.parquet --dataset-config conf/dataset/nyc_airbnb.yaml \
        --thresholds "$(cat thresholds.json)"   # mlpipe.data.drift.DriftThresholds as JSON
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlpipe.data.drift import DriftThresholds
from mlpipe.data.spec import DatasetSpec

REQUIRED = ("--data", "--dataset-config", "--thresholds")


def pytest_addoption(parser: pytest.Parser) -> None:
    # Not `required=True`: a plugin's options exist before pytest's first pass over its arguments.
    parser.addoption("--data", help="the data file to check (as the kind writes it); required")
    parser.addoption("--ref", default=None, help="the reference data file, for the drift tests")
    parser.addoption("--dataset-config", help="YAML dataset config; required")
    parser.addoption("--thresholds", help="drift thresholds as JSON; required")
    parser.addoption("--measurements", default=None, help="JSON file to write measured values to")


def pytest_configure(config: pytest.Config) -> None:
    missing = [o for o in REQUIRED if config.getoption(o) is None]
    if missing:
        raise pytest.UsageError(f"the data tests need {', '.join(missing)}")


@pytest.fixture(scope="session")
def spec(request: pytest.FixtureRequest) -> DatasetSpec:
    return DatasetSpec.from_file(request.config.getoption("--dataset-config"))


def _read(spec: DatasetSpec, path: str, what: str) -> Any:
    return spec.kind.read(Path(path), f"data_check: {what}{Path(path).name}")


@pytest.fixture(scope="session")
def data(request: pytest.FixtureRequest, spec: DatasetSpec) -> Any:
    return _read(spec, request.config.getoption("--data"), "")


def _same_file(request: pytest.FixtureRequest) -> bool:
    """The reference is the checked data itself (an unchanged rerun): read it once, not twice."""
    data, ref = request.config.getoption("--data"), request.config.getoption("--ref")
    return Path(data).resolve() == Path(ref).resolve()


@pytest.fixture(scope="session")
def ref_data(request: pytest.FixtureRequest, spec: DatasetSpec) -> Any:
    path = request.config.getoption("--ref")
    if path is None:
        pytest.skip("no reference data yet: this data becomes the reference")
    if _same_file(request):
        return request.getfixturevalue("data")
    return _read(spec, path, "reference ")


@pytest.fixture(scope="session")
def summary(data: Any, spec: DatasetSpec) -> pd.DataFrame:
    return spec.kind.summary(data, spec)


@pytest.fixture(scope="session")
def ref_summary(request: pytest.FixtureRequest, ref_data: Any, spec: DatasetSpec) -> pd.DataFrame:
    if _same_file(request):
        return request.getfixturevalue("summary")
    return spec.kind.summary(ref_data, spec)


@pytest.fixture(scope="session")
def thresholds(request: pytest.FixtureRequest) -> DriftThresholds:
    return DriftThresholds(**json.loads(request.config.getoption("--thresholds")))


@pytest.fixture(scope="session")
def measurements(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Values the tests measured (drift statistics), written out for data_check to log."""
    values: dict[str, Any] = {}
    yield values
    out = request.config.getoption("--measurements")
    if out:
        Path(out).write_text(json.dumps(values))
