"""Fixtures of the data tests: the data, the reference data, the dataset config, thresholds.

run.py passes the options; a data scientist can run the same tests by hand:
    pytest components/data_check --data clean.parquet --ref ref.parquet \
        --dataset-config conf/dataset/nyc_airbnb.yaml --kl-threshold 0.2
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlpipe.images import ImageSet, read_arrays
from mlpipe.schema import DatasetSpec
from mlpipe.tables import read_table


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data", required=True, help="table (or images.npz) to check")
    parser.addoption("--ref", default=None, help="reference table (or images.npz) for the drift tests")
    parser.addoption("--dataset-config", required=True, help="YAML dataset config")
    parser.addoption("--kl-threshold", type=float, default=0.2)
    parser.addoption("--ks-alpha", type=float, default=0.001)
    parser.addoption("--ks-sample-size", type=int, default=2000)
    parser.addoption("--measurements", default=None, help="JSON file to write measured values to")


@pytest.fixture(scope="session")
def spec(request: pytest.FixtureRequest) -> DatasetSpec:
    return DatasetSpec.from_file(request.config.getoption("--dataset-config"))


@pytest.fixture(scope="session")
def data(request: pytest.FixtureRequest) -> pd.DataFrame:
    path = Path(request.config.getoption("--data"))
    return read_table(path, f"data_check: {path.name}")


@pytest.fixture(scope="session")
def ref_data(request: pytest.FixtureRequest) -> pd.DataFrame:
    path = request.config.getoption("--ref")
    if path is None:
        pytest.skip("no reference data yet: this data becomes the reference")
    return read_table(Path(path), f"data_check: reference {Path(path).name}")


@pytest.fixture(scope="session")
def images(request: pytest.FixtureRequest) -> ImageSet:
    path = Path(request.config.getoption("--data"))
    return read_arrays(path, f"data_check: {path.name}")


@pytest.fixture(scope="session")
def ref_images(request: pytest.FixtureRequest) -> ImageSet:
    path = request.config.getoption("--ref")
    if path is None:
        pytest.skip("no reference data yet: this data becomes the reference")
    return read_arrays(Path(path), f"data_check: reference {Path(path).name}")


@pytest.fixture(scope="session")
def kl_threshold(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--kl-threshold"))


@pytest.fixture(scope="session")
def ks_alpha(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--ks-alpha"))


@pytest.fixture(scope="session")
def ks_sample_size(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--ks-sample-size"))


@pytest.fixture(scope="session")
def measurements(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Values the tests measured (drift statistics), written out for run.py to log."""
    values: dict[str, Any] = {}
    yield values
    out = request.config.getoption("--measurements")
    if out:
        Path(out).write_text(json.dumps(values))
