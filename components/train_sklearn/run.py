"""train (tables): splits off validation rows, builds the `ColumnTransformer` pipeline from the
column roles and the estimator from the model config's `_target_`, logs validation metrics and a
feature-importance plot, exports an MLflow model with a signature and an input example."""

from __future__ import annotations

from pathlib import Path

from mlpipe.pipeline.contract import StepContract
from mlpipe.pipeline.step import run_script, step_run
from mlpipe.pipeline.train_step import TrainParams

CONTRACT = StepContract(
    "train",
    TrainParams,
    __doc__,
    after=("data_check",),  # never train on data that failed its checks
)


def run(params: TrainParams) -> None:
    import time

    import numpy as np

    from mlpipe.models import evaluation, scoring
    from mlpipe.models.sklearn_model import build_model, export_sklearn, load_model_config

    with step_run(CONTRACT, params) as step:
        spec = step.spec
        model_config = load_model_config(Path(params.model_config), spec)
        step.log_json(model_config, "model_config.json")
        version, trainval = step.read_data(params.trainval_artifact)
        where = step.context(f"{version.ref} (train/validation split)")
        train, val = spec.kind.split(trainval, params.val_size, params.random_seed, params.stratify_by, where)
        model = build_model(spec, model_config)
        target = model_config["estimator"]["_target_"]
        step.log.info("fitting %s on %d rows (%d held out for validation)", target, len(train), len(val))
        started = time.perf_counter()
        model.fit(spec.kind.model_input(train, spec), spec.kind.target(train, spec))
        step.log_metrics({"train_seconds": time.perf_counter() - started})
        inputs = spec.kind.model_input(val, spec)
        classifier = spec.task == "classification" and hasattr(model, "predict_proba")
        prediction = scoring.Prediction(
            model.predict(inputs),
            model.predict_proba(inputs) if classifier else None,
            model.classes_.tolist() if classifier else None,
        )
        scores = {
            f"val_{k}": v for k, v in scoring.metrics(spec, spec.kind.target(val, spec), prediction).items()
        }
        step.log_metrics(scores)
        step.log.info("validation: %s", ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
        estimator = model.named_steps["estimator"]
        if hasattr(estimator, "feature_importances_"):
            names = list(model.named_steps["preprocess"].get_feature_names_out())
            step.log_figure(
                evaluation.feature_importance_plot(names, np.asarray(estimator.feature_importances_)),
                "feature_importance.png",
            )
        path = export_sklearn(
            model, spec, val.head(5), trainval[spec.target], step.workdir / "out" / params.output_artifact
        )
        step.log_model(
            params.output_artifact,
            path,
            description=f"{target} pipeline for {spec.name} ({spec.task})",
            config=model_config,
            metadata={"flavor": "sklearn", "format": "cloudpickle", "trained_on": version.ref, **scores},
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
