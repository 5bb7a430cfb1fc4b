"""train: fit the scikit-learn pipeline from config, validate it, export it as an MLflow model."""

from __future__ import annotations

import argparse

import numpy as np

from mlpipe import evaluation
from mlpipe.component import optional_column, run_script, step_run
from mlpipe.modeling import build_model, export_sklearn, load_model_config
from mlpipe.paths import resolve_path
from mlpipe.schema import DatasetSpec, model_frame
from mlpipe.splitting import split

STEP = "train"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trainval_artifact", default="trainval_data:latest")
    parser.add_argument("--output_artifact", default="model_export")
    parser.add_argument("--dataset_config", default="conf/dataset/nyc_airbnb.yaml")
    parser.add_argument("--model_config", default="conf/model/random_forest.yaml")
    parser.add_argument("--val_size", type=float, default=0.2)
    parser.add_argument("--random_seed", type=float, default=42)
    parser.add_argument("--stratify_by", default="none")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    stratify = optional_column(args.stratify_by)
    with step_run(STEP, vars(args)) as step:
        spec = DatasetSpec.from_file(resolve_path(args.dataset_config))
        model_config = load_model_config(resolve_path(args.model_config), spec)
        step.log_json(model_config, "model_config.json")
        version, trainval = step.read_table(args.trainval_artifact)
        train, val = split(
            trainval,
            args.val_size,
            int(args.random_seed),
            stratify,
            step.where(f"{version.ref} (train/validation split)"),
        )
        model = build_model(spec, model_config)
        step.log.info(
            "fitting %s on %d rows (%d held out for validation)",
            model_config["estimator"]["_target_"],
            len(train),
            len(val),
        )
        model.fit(model_frame(train, spec), train[spec.target])
        predictions = model.predict(model_frame(val, spec))
        if spec.task == "regression":
            scores = evaluation.regression_metrics(val[spec.target], predictions)
        else:
            proba = model.predict_proba(model_frame(val, spec)) if hasattr(model, "predict_proba") else None
            scores = evaluation.classification_metrics(
                val[spec.target], predictions, proba, list(getattr(model, "classes_", [])) or None
            )
        step.log_metrics({f"val_{k}": v for k, v in scores.items()})
        step.log.info("validation: %s", ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
        estimator = model.named_steps["estimator"]
        if hasattr(estimator, "feature_importances_"):
            names = list(model.named_steps["preprocess"].get_feature_names_out())
            step.log_figure(
                evaluation.feature_importance_plot(names, np.asarray(estimator.feature_importances_)),
                "feature_importance.png",
            )
        path = export_sklearn(
            model, spec, val.head(5), trainval[spec.target], step.workdir / "out" / args.output_artifact
        )
        step.log_artifact(
            args.output_artifact,
            path,
            type="model_export",
            description=f"{model_config['estimator']['_target_']} pipeline for {spec.name} ({spec.task})",
            metadata={
                "flavor": "sklearn",
                "format": "cloudpickle",
                "trained_on": version.ref,
                **{f"val_{k}": v for k, v in scores.items()},
            },
        )


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
