"""One registered model per dataset: whichever family a comparison or a sweep over families picks,
the prod version says what it holds (tag `mlpipe.model`, its description), and a registry name
that names a family holds only that family."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlpipe.tracking import promotion
from tests.conftest import run_main

FAST = ["dataset=penguins", "main.executor=inprocess"]
FAMILIES = {
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
}


def train_run(client: MlflowClient, experiment_id: str, family: str) -> str:
    runs = client.search_runs(
        [experiment_id],
        f"tags.`mlpipe.step` = 'train' and params.`model.name` = '{family}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id


def prod_holds_what_it_says(uri: str, name: str) -> str:
    """The family the prod version's tag names, checked against the model it loads and the
    train run that made it."""
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(name, "prod")
    family = version.tags[promotion.TAG_MODEL]
    trained_by = client.get_run(version.run_id).data.params["model.name"]
    mlflow.set_tracking_uri(uri)
    estimator = mlflow.sklearn.load_model(f"models:/{name}@prod").named_steps["estimator"]
    assert family == trained_by and version.tags[promotion.TAG_ESTIMATOR] == FAMILIES[family]
    assert FAMILIES[family].endswith(f".{type(estimator).__name__}")
    assert version.description.startswith(f"{family} ({FAMILIES[family]}) from model_export:v")
    return family


@pytest.mark.slow
def test_promote_after_a_comparison_and_a_sweep_of_two_families(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = "main.steps='download,basic_cleaning,data_split,compare'"
    done = run_main([*FAST, steps, "compare.models=[random_forest,hist_gradient_boosting]"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("penguins").experiment_id
    boosting = train_run(client, experiment_id, "hist_gradient_boosting")

    # The command's model= is random_forest (the default); the candidate is the boosting.
    done = run_main([*FAST, "main.steps=promote", f"promote.candidates='runs:{boosting}'"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert prod_holds_what_it_says(uri, "penguins") == "hist_gradient_boosting"
    assert "version 1 of penguins (model_export:v" in done.stderr
    assert [m.name for m in client.search_registered_models()] == ["penguins"]

    # A name of the old default, <dataset>_<model>, keeps working for its own family only.
    old = ["main.steps=promote", "promote.model_name=penguins_random_forest"]
    done = run_main([*FAST, *old, f"promote.candidates='runs:{boosting}'"], uri, tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(errors) == 1 and "'penguins_random_forest' names random_forest" in errors[0], errors
    assert "hist_gradient_boosting" in errors[0]
    assert client.search_model_versions("name = 'penguins_random_forest'") == []
    forest = train_run(client, experiment_id, "random_forest")
    done = run_main([*FAST, *old, f"promote.candidates='runs:{forest}'"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert prod_holds_what_it_says(uri, "penguins_random_forest") == "random_forest"

    # A sweep over the two families, then the best of the sweep into the dataset's registry.
    sweep = ["main.steps=train", "model=random_forest,hist_gradient_boosting", "-m"]
    done = run_main([*FAST, *sweep], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_main([*FAST, "main.steps=promote", "promote.candidates=sweep:last"], uri, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert prod_holds_what_it_says(uri, "penguins") in FAMILIES
