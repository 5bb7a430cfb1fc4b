"""Each component run as its __main__ against a real store: outputs, and bad input ending in one
line, a FAILED run and no new artifact version."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlpipe.tracking.artifacts import ArtifactStore
from mlpipe.tracking.runs import TAG_ERROR, TAG_STEP
from tests.conftest import DATASETS, NYC_CSV, run_component

NYC = str(DATASETS / "nyc_airbnb.yaml")


def last_run(store: ArtifactStore):
    return MlflowClient().search_runs([store.experiment_id], order_by=["attributes.start_time DESC"])[0]


def assert_failed_cleanly(code: int, err: str, store: ArtifactStore, expected: str, artifact: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(lines) == 1 and expected in lines[0], err
    run = last_run(store)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags[TAG_ERROR]
    assert store.versions(artifact) == []


def download(capsys, source: str) -> tuple[int, str]:
    return run_component("get_data", ["--source", source, "--output_artifact", "raw_data"], capsys)


def test_download_logs_the_file_unchanged(store: ArtifactStore, capsys):
    code, _ = download(capsys, str(NYC_CSV))
    assert code == 0
    version = store.resolve("raw_data:latest")
    assert version.ref == "raw_data:v0" and version.file == "sample1.csv" and version.type == "raw_data"
    assert version.metadata["rows"] == 20000
    run = last_run(store)
    assert run.data.tags[TAG_STEP] == "download" and run.data.metrics["rows"] == 20000
    # the same file again is the same version
    assert download(capsys, str(NYC_CSV))[0] == 0
    assert len(store.versions("raw_data")) == 1


def test_download_from_a_package_and_a_relative_path(store: ArtifactStore, capsys):
    assert download(capsys, "pkg://palmerpenguins/data/penguins.csv")[0] == 0
    assert store.resolve("raw_data:latest").metadata["rows"] == 344
    assert download(capsys, "data/nyc_airbnb/sample1.csv")[0] == 0  # from the project root
    assert store.resolve("raw_data:latest").metadata["rows"] == 20000


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a temporary folder."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def test_download_over_http(store: ArtifactStore, capsys, http_folder):
    url, folder = http_folder
    pd.read_csv(NYC_CSV).head(50).to_parquet(folder / "few.parquet")
    assert download(capsys, f"{url}/few.parquet")[0] == 0
    assert store.resolve("raw_data:latest").metadata == {
        "source": f"{url}/few.parquet",
        "rows": 50,
        "columns": 16,
    }
    code, err = download(capsys, f"{url}/missing.csv")
    assert_failed_cleanly(code, err, store, f"could not fetch {url}/missing.csv: HTTP 404", "nothing")
    assert len(store.versions("raw_data")) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "download: source '{path}' not found"),
        ("", "is empty; expected a header row and data rows"),
        ("a,b,c\n", "has a header but no data rows"),
    ],
)
def test_download_bad_files(store: ArtifactStore, capsys, tmp_path: Path, content, expected):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    code, err = download(capsys, str(path))
    assert_failed_cleanly(code, err, store, expected.format(path=path), "raw_data")


def test_download_unknown_format_and_scheme(store: ArtifactStore, capsys, tmp_path: Path):
    (tmp_path / "data.txt").write_text("x")
    code, err = download(capsys, str(tmp_path / "data.txt"))
    assert_failed_cleanly(code, err, store, "has an unknown format; expected .csv or .parquet", "raw_data")
    code, err = download(capsys, "ftp://example.org/x.csv")
    assert_failed_cleanly(code, err, store, "unsupported scheme 'ftp'", "raw_data")


def raw_version(store: ArtifactStore, capsys, tmp_path: Path, df: pd.DataFrame) -> None:
    path = tmp_path / "raw.csv"
    df.to_csv(path, index=False)
    assert download(capsys, str(path))[0] == 0


def clean_args(*extra: str) -> list[str]:
    return [
        "--input_artifact",
        "raw_data:latest",
        "--output_artifact",
        "clean_data",
        "--dataset_config",
        NYC,
        *extra,
    ]


def test_basic_cleaning_logs_clean_data_and_counts(store, capsys, tmp_path, nyc_small):
    raw_version(store, capsys, tmp_path, nyc_small)
    assert run_component("basic_cleaning", clean_args(), capsys)[0] == 0
    run = last_run(store)
    dropped = int((nyc_small.price > 350).sum() + (nyc_small.price < 10).sum())
    assert run.data.metrics["rows_in"] == 600 and run.data.metrics["rows_out"] == 600 - dropped
    assert run.data.metrics["dropped.price outside _10_ 350_"] == dropped
    assert store.inputs_of(run) == {"raw_data": store.resolve("raw_data:v0").digest}
    clean = store.resolve("clean_data:latest")
    data = pd.read_parquet(store.download(clean, tmp_path / "dl"))
    assert len(data) == 600 - dropped and pd.api.types.is_datetime64_any_dtype(data.last_review)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.drop(columns=["latitude"]), "lacks required column(s) 'latitude'"),
        (lambda d: d.assign(price=None), "target column 'price' is empty (all values missing)"),
        (
            lambda d: d.assign(availability_365=d.availability_365.astype(str).where(d.index != 3, "many")),
            "column 'availability_365' has non-numeric value 'many' in data row 4; expected numbers",
        ),
    ],
)
def test_basic_cleaning_bad_input(store, capsys, tmp_path, nyc_small, change, expected):
    raw_version(store, capsys, tmp_path, change(nyc_small))
    code, err = run_component("basic_cleaning", clean_args(), capsys)
    assert_failed_cleanly(code, err, store, expected, "clean_data")
    assert "basic_cleaning: raw_data:v0 (raw.csv)" in err


def test_basic_cleaning_missing_input_version(store, capsys):
    code, err = run_component("basic_cleaning", clean_args(), capsys)
    assert_failed_cleanly(code, err, store, "artifact 'raw_data:latest' not found", "clean_data")


def test_data_split_and_stratification(store, capsys, tmp_path, nyc_small):
    raw_version(store, capsys, tmp_path, nyc_small)
    assert run_component("basic_cleaning", clean_args(), capsys)[0] == 0
    args = ["--input_artifact", "clean_data:latest", "--test_size", "0.25", "--stratify_by", "room_type"]
    assert run_component("data_split", args, capsys)[0] == 0
    test = pd.read_parquet(store.download(store.resolve("test_data:latest"), tmp_path / "t"))
    trainval = pd.read_parquet(store.download(store.resolve("trainval_data:latest"), tmp_path / "tv"))
    assert abs(len(test) / (len(test) + len(trainval)) - 0.25) < 0.01
    assert set(test.id).isdisjoint(trainval.id)
    code, err = run_component("data_split", [*args[:4], "--stratify_by", "nope"], capsys)
    assert_failed_cleanly(code, err, store, "stratify column 'nope' is not in the data", "nothing")
