"""The scikit-learn pipeline built from config, exported, and reloaded in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.models.sklearn_model import build_model, export_sklearn, load_model_config
from mlpipe.pipeline.config import load

RELOAD = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
print(json.dumps([float(x) for x in model.predict(frame)]))
"""


def small_config(dataset: str = "nyc_airbnb") -> dict:
    cfg = load([f"dataset={dataset}", "model.estimator.n_estimators=20", "model.estimator.n_jobs=1"])
    return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.fixture
def nyc_clean(nyc_raw: pd.DataFrame, nyc_spec: DatasetSpec) -> pd.DataFrame:
    return clean(nyc_raw.head(2000), nyc_spec, "test").data


def test_preprocessing_has_a_branch_per_role(nyc_spec: DatasetSpec, nyc_clean: pd.DataFrame):
    model = build_model(nyc_spec, small_config())
    branches = [name for name, _, _ in model.named_steps["preprocess"].transformers]
    assert branches == ["numeric", "categorical", "ordinal", "text_name", "date"]
    model.fit(nyc_clean, nyc_clean.price)
    names = model.named_steps["preprocess"].get_feature_names_out()
    assert sum(n.startswith("text_name__") for n in names) == 30  # tfidf_max_features
    assert "date__last_review_days_since" in names


def test_tfidf_size_comes_from_config(nyc_spec: DatasetSpec, nyc_clean: pd.DataFrame):
    config = small_config()
    config["preprocessing"]["tfidf_max_features"] = 7
    model = build_model(nyc_spec, config).fit(nyc_clean, nyc_clean.price)
    names = model.named_steps["preprocess"].get_feature_names_out()
    assert sum(n.startswith("text_name__") for n in names) == 7


def test_unseen_categories_and_missing_values_are_handled(nyc_spec: DatasetSpec, nyc_clean: pd.DataFrame):
    model = build_model(nyc_spec, small_config()).fit(nyc_clean, nyc_clean.price)
    odd = nyc_clean.head(3).copy()
    odd["neighbourhood_group"] = ["Atlantis", None, "Bronx"]
    odd["room_type"] = ["Castle", None, "Shared room"]
    odd["last_review"] = [pd.NaT, pd.Timestamp("2019-01-01"), pd.NaT]
    odd["reviews_per_month"] = np.nan
    odd["name"] = None
    assert np.isfinite(model.predict(odd)).all()


def test_export_reloads_in_a_fresh_process(nyc_spec: DatasetSpec, nyc_clean: pd.DataFrame, tmp_path: Path):
    model = build_model(nyc_spec, small_config()).fit(nyc_clean, nyc_clean.price)
    path = export_sklearn(model, nyc_spec, nyc_clean.head(5), nyc_clean.price, tmp_path / "model")
    mlmodel = (path / "MLmodel").read_text()
    assert "serialization_format: cloudpickle" in mlmodel and "signature" in mlmodel
    assert (path / "code" / "mlpipe" / "models" / "features.py").is_file()  # loads without the project
    rows = nyc_clean.tail(20)
    request = tmp_path / "rows.parquet"
    rows.to_parquet(request)
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), str(request)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert np.allclose(json.loads(out.stdout.splitlines()[-1]), model.predict(rows))


def test_classifier_for_a_classification_dataset(penguins_spec: DatasetSpec):
    from palmerpenguins import load_penguins

    data = clean(load_penguins(), penguins_spec, "test").data
    model = build_model(penguins_spec, small_config("penguins"))
    assert type(model.named_steps["estimator"]).__name__ == "RandomForestClassifier"
    model.fit(data, data.species)
    assert set(model.predict(data)) <= {"Adelie", "Chinstrap", "Gentoo"}


def test_model_config_errors(nyc_spec: DatasetSpec, tmp_path: Path):
    with pytest.raises(StepError, match=r"model config '.*nope\.yaml' not found"):
        load_model_config(tmp_path / "nope.yaml", nyc_spec)
    bad = tmp_path / "bad.yaml"
    bad.write_text("estimator:\n  _target_: sklearn.ensemble.NoSuchForest\n")
    config = load_model_config(bad, nyc_spec)
    with pytest.raises(StepError, match=r"cannot build estimator sklearn\.ensemble\.NoSuchForest"):
        build_model(nyc_spec, config)


def test_model_config_file_resolves_against_the_dataset(nyc_spec: DatasetSpec, penguins_spec: DatasetSpec):
    from tests.conftest import CONF_DIR

    path = CONF_DIR / "model" / "random_forest.yaml"
    assert load_model_config(path, nyc_spec)["estimator"]["_target_"].endswith("RandomForestRegressor")
    assert load_model_config(path, penguins_spec)["estimator"]["_target_"].endswith("RandomForestClassifier")
