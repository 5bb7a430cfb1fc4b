"""The exported model scores the rows users actually have: a table as pandas reads it from the
source (integers, floats, text, missing values, extra columns), through every client: the pyfunc
flavor, `mlflow models predict` and `mlflow models serve`."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.models.sklearn_model import build_model, export_sklearn
from mlpipe.pipeline.config import load
from tests.conftest import NYC_CSV, subprocess_env
from tests.test_serving import post, served


def exported(spec: DatasetSpec, raw: pd.DataFrame, folder: Path) -> Path:
    """A small forest trained on the cleaned rows, exported as the pipeline exports it."""
    cfg = load([f"dataset={spec.name}", "model.estimator.n_estimators=20", "model.estimator.n_jobs=1"])
    data = clean(raw, spec, "test").data
    model = build_model(spec, OmegaConf.to_container(cfg.model, resolve=True)).fit(data, data[spec.target])
    return export_sklearn(model, spec, data.head(5), data[spec.target], folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, nyc_spec: DatasetSpec, penguins_spec: DatasetSpec):
    from palmerpenguins import load_penguins

    folder = tmp_path_factory.mktemp("raw_input")
    nyc, penguins = pd.read_csv(NYC_CSV), load_penguins()
    return {
        "nyc": (exported(nyc_spec, nyc.head(3000), folder / "nyc"), nyc),
        "penguins": (exported(penguins_spec, penguins, folder / "penguins"), penguins),
    }


@pytest.mark.parametrize("name", ["nyc", "penguins"])
def test_pyfunc_takes_the_table_as_read(models, name: str) -> None:
    path, raw = models[name]
    assert {raw[c].dtype.kind for c in raw.columns} >= {"i", "f"}  # integers and floats as read
    assert raw.isna().any().any()  # and missing values
    model = mlflow.pyfunc.load_model(str(path))
    predictions = np.asarray(model.predict(raw))  # extra columns (the id, the target) are left out
    assert len(predictions) == len(raw)
    if name == "penguins":
        assert set(predictions) <= {"Adelie", "Chinstrap", "Gentoo"}
        probabilities = model.predict(raw, params={"predict_method": "predict_proba"})
        assert list(probabilities.columns) == ["Adelie", "Chinstrap", "Gentoo"]
        assert np.allclose(probabilities.sum(axis=1), 1.0)
    else:
        assert np.isfinite(predictions.astype(float)).all()


def test_a_float_in_an_integer_column_is_used_as_a_float(models) -> None:
    path, raw = models["nyc"]
    model = mlflow.sklearn.load_model(str(path))
    rows = raw.head(3).assign(minimum_nights=[2.5, 2.0, 3.0])
    assert model.named_steps["input"].transform(rows)["minimum_nights"].tolist() == [2.5, 2.0, 3.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.astype({"minimum_nights": object}).assign(minimum_nights=["three", 2]),
            "model input: column 'minimum_nights' has non-numeric value 'three' in data row 1",
        ),
        (lambda d: d.drop(columns=["room_type"]), "'room_type'"),
    ],
)
def test_bad_input_is_refused_naming_the_column(models, change, message: str) -> None:
    path, raw = models["nyc"]
    with pytest.raises(MlflowException, match=message):
        mlflow.pyfunc.load_model(str(path)).predict(change(raw.head(2)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nyc", "penguins"])
def test_mlflow_models_predict_on_the_first_rows_of_the_source(models, name: str, tmp_path: Path) -> None:
    path, raw = models[name]
    rows = tmp_path / "first_rows.csv"
    raw.head(2).to_csv(rows, index=False)
    out = tmp_path / "predictions.json"
    command = ["models", "predict", "-m", str(path), "-i", str(rows), "-t", "csv", "-o", str(out)]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), *command, "--env-manager", "local"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = mlflow.pyfunc.load_model(str(path)).predict(pd.read_csv(rows))
    assert json.loads(out.read_text())["predictions"] == np.asarray(expected).tolist()


def post_csv(url: str, text: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, text.encode(), {"Content-Type": "text/csv"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nyc", "penguins"])
def test_a_served_model_takes_json_and_csv_as_clients_send_them(models, name: str, tracking_uri: str) -> None:
    path, raw = models[name]
    model = mlflow.pyfunc.load_model(str(path))
    rows = raw.head(20)
    with served(str(path), tracking_uri) as base:
        status, answer = post(f"{base}/invocations", rows)  # integers, floats, nulls, extra columns
        assert status == 200, answer
        assert answer["predictions"] == np.asarray(model.predict(rows)).tolist()
        # text/csv: raw rows of the source file as a client sends them, extra columns included
        three = raw.head(3).to_csv(index=False)
        status, answer = post_csv(f"{base}/invocations", three)
        assert status == 200, answer
        expected = np.asarray(model.predict(pd.read_csv(io.StringIO(three)))).tolist()
        assert answer["predictions"] == pytest.approx(expected) if name == "nyc" else expected
        if name == "nyc":
            # A float sent for a column the source holds as integers is used as a float: find one
            # where truncating would change the prediction, and check the server did not.
            for value in (x + 0.5 for x in range(1, 40)):
                sent = rows.head(1).assign(minimum_nights=value)
                if model.predict(sent)[0] != model.predict(sent.assign(minimum_nights=math.floor(value)))[0]:
                    break
            else:
                pytest.fail("no value of minimum_nights where truncating changes the prediction")
            status, answer = post(f"{base}/invocations", sent)
            assert status == 200 and answer["predictions"] == model.predict(sent).tolist()
            column = "minimum_nights"
        else:
            column = "bill_length_mm"
        wrong = rows.head(2).astype({column: object})
        wrong.loc[wrong.index[0], column] = "long"
        status, answer = post(f"{base}/invocations", wrong)  # refused by the parser, naming the column
        assert status == 400 and column in answer["message"] and "'long'" in answer["message"], answer
        status, answer = post_csv(f"{base}/invocations", wrong.to_csv(index=False))
        assert status == 400 and "'long'" in answer["message"], answer
        status, answer = post(f"{base}/invocations", rows.drop(columns=[column]))
        assert status == 400 and column in answer["message"], answer
