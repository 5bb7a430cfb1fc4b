"""test_model: load the exported model from the artifact store and score the held-out test set."""

from __future__ import annotations

import argparse

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np

from mlpipe import evaluation, images
from mlpipe.component import Step, run_script, step_run
from mlpipe.errors import StepError
from mlpipe.paths import resolve_path
from mlpipe.promotion import auto_model_reference
from mlpipe.schema import DatasetSpec, model_frame

STEP = "test_model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model_artifact", default="auto", help="auto: model_export:prod if any, else latest"
    )
    parser.add_argument("--test_artifact", default="test_data:latest")
    parser.add_argument("--dataset_config", default="conf/dataset/nyc_airbnb.yaml")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
        spec = DatasetSpec.from_file(resolve_path(args.dataset_config))
        reference = args.model_artifact
        if reference == "auto":
            reference = auto_model_reference(step.store, trains_now=False)
        if images.is_image_dataset(spec.raw):
            test_image_model(step, args, reference)
            return
        model_version, model_path = step.use(reference)
        test_version, test = step.read_table(args.test_artifact)
        # What serving does: the pyfunc flavor, with the signature enforced on the input.
        model = mlflow.pyfunc.load_model(str(model_path))
        features = model_frame(test, spec)
        predictions = np.asarray(model.predict(features)).ravel()
        actual = test[spec.target]
        if spec.task == "regression":
            scores = evaluation.regression_metrics(actual, predictions)
            step.log_figure(
                evaluation.predicted_vs_actual(actual, predictions, spec.target), "predicted_vs_actual.png"
            )
        else:
            native = mlflow.sklearn.load_model(str(model_path))  # probabilities for ROC AUC
            proba = native.predict_proba(features) if hasattr(native, "predict_proba") else None
            scores = evaluation.classification_metrics(
                actual, predictions, proba, list(getattr(native, "classes_", [])) or None
            )
            table = evaluation.per_label_table(actual, predictions)
            mlflow.log_table(table, "per_label.json")
            step.log.info("per label (worst F1 first):\n%s", table.to_string(index=False))
            step.log_figure(evaluation.confusion_matrix_plot(actual, predictions), "confusion_matrix.png")
        step.log_metrics(scores)
        mlflow.set_tags({"model_artifact": model_version.ref, "test_artifact": test_version.ref})
        step.log.info(
            "%s on %s (%d rows): %s",
            model_version.ref,
            test_version.ref,
            len(test),
            ", ".join(f"{k} {v:.4g}" for k, v in scores.items()),
        )


def test_image_model(step: Step, args: argparse.Namespace, model_reference: str) -> None:
    """Score the exported image model as served (pyfunc) and as plain torch loads it
    (`torch.jit.load` or `torch.export.load`) in a process without the project: both must give
    the same probabilities."""
    from mlpipe.torch_export import load_pyfunc, model_format, score_in_fresh_process

    model_version, model_path = step.use(model_reference)
    test_version, test = images.use_images(step, args.test_artifact)
    pixels = test.images.astype(np.float32)
    model = load_pyfunc(model_path)
    classes = list(model.metadata.metadata["classes"])
    proba = np.asarray(model.predict(pixels))
    predictions = np.asarray(classes)[proba.argmax(axis=1)]
    export_format = model_format(model_path)
    fresh, info = score_in_fresh_process(model_path, pixels)
    difference = float(np.abs(fresh - proba).max())
    step.log_metrics({"fresh_process_max_abs_diff": difference})
    step.log.info(
        "%s in a fresh process without the project (%s): largest difference from pyfunc %.3g",
        info["load"],
        info["loader"],
        difference,
    )
    if not difference <= 1e-5:
        raise StepError(
            f"{STEP}: {model_version.ref} gives other probabilities under {info['load']} in a fresh "
            f"process than as pyfunc (largest difference {difference:.3g}); expected the same"
        )
    scores = evaluation.classification_metrics(test.labels, predictions, proba, classes)
    table = evaluation.per_label_table(test.labels, predictions)
    mlflow.log_table(table, "per_label.json")
    step.log.info("per label (worst F1 first):\n%s", table.to_string(index=False))
    step.log_figure(evaluation.confusion_matrix_plot(test.labels, predictions), "confusion_matrix.png")
    step.log_metrics(scores)
    mlflow.set_tags(
        {
            "model_artifact": model_version.ref,
            "test_artifact": test_version.ref,
            "model_format": export_format,
        }
    )
    step.log.info(
        "%s (%s) on %s (%d images): %s",
        model_version.ref,
        export_format,
        test_version.ref,
        len(test),
        ", ".join(f"{k} {v:.4g}" for k, v in scores.items()),
    )


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
