"""The Hydra config: every group option composes and builds, and bad overrides are one line."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.base import is_classifier, is_regressor

from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.pipeline.config import check_overrides, groups, load


@pytest.mark.parametrize("dataset", groups()["dataset"])
@pytest.mark.parametrize("model", groups()["model"])
def test_every_dataset_and_model_compose(dataset: str, model: str):
    cfg = load([f"dataset={dataset}", f"model={model}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["main"]["project_name"] == cfg.dataset.name
    assert cfg.model.component
    if cfg.dataset.get("kind", "table") == "table" and "estimator" in resolved["model"]:
        spec = DatasetSpec.from_dict(resolved["dataset"])
        assert spec.target not in spec.features
        estimator = instantiate(resolved["model"]["estimator"])
        assert (is_classifier if spec.task == "classification" else is_regressor)(estimator)
    if "optimizer" in resolved["model"]:  # a torch model: the optimizer factory builds
        assert callable(instantiate(resolved["model"]["optimizer"]))


def test_defaults():
    cfg = load()
    assert cfg.dataset.name == "nyc_airbnb" and cfg.model.name == "random_forest"
    assert cfg.main.steps == "all" and cfg.main.env_manager == "local"
    assert cfg.test_model.model_artifact == "model_export:auto"  # this run's model, else prod, else latest


def test_good_overrides_pass():
    check_overrides(["main.steps=train", "model.estimator.max_depth=5,10", "dataset=penguins", "-m"])
    check_overrides(["+extra.key=1", "hydra/launcher=basic"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "main.stepz=all",
            r"unknown config key 'main.stepz' in the overrides; keys under 'main': project_name",
        ),
        ("nokey=1", r"unknown config key 'nokey'.*\(use \+nokey=\.\.\. to add a key\)"),
        ("dataset=nope", r"unknown dataset 'nope' in the overrides; expected one of .*nyc_airbnb, penguins"),
        ("model=nope,random_forest", r"unknown model 'nope'"),
    ],
)
def test_unknown_keys_and_options_are_one_line(override: str, message: str):
    with pytest.raises(StepError, match=message) as info:
        check_overrides([override])
    assert "\n" not in str(info.value)
