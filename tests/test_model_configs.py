"""The model families beyond the random forest: each builds from its one YAML file for both tasks,
trains, and sweeps over its own keys."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.models.sklearn_model import build_model
from mlpipe.models.torch_network import build_network
from mlpipe.pipeline.config import check_overrides, load
from tests.conftest import DATASETS

PENGUINS_CSV = files("palmerpenguins") / "data" / "penguins.csv"


def model_config(model: str, dataset: str) -> dict:
    return OmegaConf.to_container(load([f"dataset={dataset}", f"model={model}"]).model, resolve=True)


@pytest.mark.parametrize(
    ("model", "dataset", "estimator"),
    [
        ("hist_gradient_boosting", "nyc_airbnb", HistGradientBoostingRegressor),
        ("hist_gradient_boosting", "penguins", HistGradientBoostingClassifier),
        ("linear", "nyc_airbnb", Ridge),  # picked by task
        ("linear", "penguins", LogisticRegression),
        ("logistic_regression", "nyc_airbnb", Ridge),  # the earlier name of linear still works
    ],
)
def test_tabular_families_pick_their_estimator_by_task_and_train(
    model: str, dataset: str, estimator: type, nyc_raw: pd.DataFrame
) -> None:
    spec = DatasetSpec.from_file(DATASETS / f"{dataset}.yaml")
    raw = nyc_raw.head(600) if dataset == "nyc_airbnb" else pd.read_csv(PENGUINS_CSV)
    data = clean(raw, spec, "test").data
    pipeline = build_model(spec, model_config(model, dataset))
    assert isinstance(pipeline.named_steps["estimator"], estimator)
    linear = model in ("linear", "logistic_regression")
    assert isinstance(pipeline.named_steps.get("standardize"), StandardScaler) == linear
    with threadpool_limits(1):  # OpenMP (gradient boosting) crawls on a busy shared machine
        pipeline.fit(spec.kind.model_input(data, spec), data[spec.target])
        predicted = pipeline.predict(spec.kind.model_input(data, spec))
    assert len(predicted) == len(data)
    if spec.task == "classification":
        assert (predicted == data[spec.target]).mean() > 0.9  # penguins separate well


def test_logistic_regression_is_the_linear_config_recorded_as_linear() -> None:
    for dataset in ("nyc_airbnb", "penguins"):
        old, new = model_config("logistic_regression", dataset), model_config("linear", dataset)
        assert old == new and new["name"] == "linear"


def test_cnn_small_is_a_smaller_network_than_cnn() -> None:
    sizes = {
        name: sum(
            p.numel()
            for p in build_network(model_config(name, "digits")["network"], 1, (16, 16), 10).parameters()
        )
        for name in ("cnn", "cnn_small")
    }
    assert sizes["cnn_small"] < sizes["cnn"] / 3


@pytest.mark.parametrize(
    "sweep",
    [
        ["model=random_forest,hist_gradient_boosting,linear", "-m"],
        ["model=linear", "model.estimator_by_task.classification.C=0.1,1,10", "-m"],
        ["model=logistic_regression", "model.estimator_by_task.regression.alpha=0.1,1", "-m"],
        ["model=hist_gradient_boosting", "model.estimator.max_iter=50,100", "-m"],
        ["dataset=digits", "model=cnn_small", "model.lr=0.01,0.003", "-m"],
    ],
)
def test_the_new_families_sweep(sweep: list[str]) -> None:
    check_overrides(sweep)  # what main.py checks before a sweep starts
