"""The data path at scale gives what the plain path gave: schemas from types equal MLflow's own
inference, a CSV scanned in chunks says what a whole read says, digests computed while writing
equal a read-back, a split by class codes is scikit-learn's split, and a local store keeps one
copy of each file, read where it lies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.model_selection import train_test_split

from mlpipe import digests
from mlpipe.data import splitting
from mlpipe.data.kinds.table import scan as table_scan
from mlpipe.data.kinds.table.schema import mlflow_schema
from mlpipe.data.tables import read_table, write_table
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import NYC_CSV


def edge_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "small": np.array([1, 2, 3], dtype="int32"),
            "big": [1, 2, 3],
            "ratio": np.array([0.5, 1.5, np.nan], dtype="float32"),
            "price": [1.0, 2.0, 3.0],
            "flag": [True, False, True],
            "name": ["a", None, "c"],
            "when": pd.to_datetime(["2019-01-01", "2019-02-01", None]),
            "blob": [b"x", b"y", b"z"],
            "kind": pd.Categorical(["p", "q", "p"]),
        }
    )


@pytest.mark.filterwarnings("ignore:Hint")
@pytest.mark.parametrize("frame", ["nyc", "edges"])
def test_schema_from_types_is_mlflows_inferred_schema(frame: str) -> None:
    df = pd.read_csv(NYC_CSV).head(2000) if frame == "nyc" else edge_frame()
    assert mlflow_schema(df) == {"mlflow_colspec": infer_signature(df).inputs.to_dict()}


def test_a_csv_scanned_in_chunks_says_what_a_whole_read_says(tmp_path: Path, monkeypatch) -> None:
    # the first chunk sees only whole numbers and no gaps; later ones a fraction, a gap, a word
    rows = 30
    df = pd.DataFrame(
        {
            "id": range(rows),
            "count": [1] * 10 + [2.5] + [3] * 19,
            "gappy": [1.0] * 20 + [None] * 10,
            "code": ["7"] * 25 + ["x"] * 5,
        }
    )
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 10)
    found = table_scan.scan(path, "download")
    whole = read_table(path, "download")
    assert (found.rows, found.columns) == (rows, list(whole.columns))
    assert found.schema == mlflow_schema(whole)


def test_a_parquet_file_is_scanned_from_its_footer(tmp_path: Path) -> None:
    path = write_table(pd.read_csv(NYC_CSV).head(3000), tmp_path / "t.parquet")
    found = table_scan.scan(path, "download")
    whole = read_table(path, "download")
    assert (found.rows, found.columns, found.schema) == (3000, list(whole.columns), mlflow_schema(whole))


def test_a_bad_row_far_into_a_csv_fails_the_scan_in_one_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "1,2\n" * 40 + "1,2,3,4\n")
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 10)
    with pytest.raises(Exception, match=r"^download: .*t\.csv") as e:
        table_scan.scan(path, "download")
    assert "\n" not in str(e.value)


def test_digests_remembered_while_writing_equal_a_read_back(tmp_path: Path) -> None:
    df = pd.read_csv(NYC_CSV).head(5000)
    path = write_table(df, tmp_path / "clean.parquet")
    remembered = digests.digest_path(path)
    assert remembered == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "copy.csv"
    assert digests.copy_hashed(NYC_CSV, copy) == hashlib.sha256(NYC_CSV.read_bytes()).hexdigest()
    # a file changed after it was written is read again, not answered from memory
    path.write_bytes(b"changed")
    assert digests.digest_path(path) == hashlib.sha256(b"changed").hexdigest()


@pytest.mark.parametrize("stratify_by", [None, "neighbourhood_group"])
def test_a_split_by_row_positions_is_scikit_learns_split(stratify_by: str | None) -> None:
    df = pd.read_csv(NYC_CSV)
    first, second = splitting.split(df, 0.2, 42, stratify_by, "data_split")
    stratify = df[stratify_by] if stratify_by else None
    want_first, want_second = train_test_split(df, test_size=0.2, random_state=42, stratify=stratify)
    pd.testing.assert_frame_equal(first, want_first.reset_index(drop=True))
    pd.testing.assert_frame_equal(second, want_second.reset_index(drop=True))


def test_a_local_store_holds_one_copy_and_is_read_where_it_lies(store: ArtifactStore, tmp_path: Path) -> None:
    written = write_table(pd.read_csv(NYC_CSV).head(100), tmp_path / "out" / "clean.parquet")
    run = MlflowClient().create_run(store.experiment_id).info.run_id
    logged = store.log(run, "clean_data", written, type="data", description="d", metadata={})
    MlflowClient().set_terminated(run, "FINISHED")
    assert logged.stored is not None and os.path.samefile(logged.stored, written)
    version = store.resolve("clean_data:latest")
    read = store.download(version, tmp_path / "in")
    assert os.path.samefile(read, written) and not (tmp_path / "in").exists()
    assert digests.digest_path(read) == version.digest
