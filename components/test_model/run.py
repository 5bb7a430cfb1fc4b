"""test_model: loads the exported model from the artifact store through its pyfunc flavor, as
serving does, and scores the test set: MAE, RMSE, R2 and a predicted-vs-actual plot for regression;
accuracy, macro F1, ROC AUC, a per-label table and a confusion matrix for classification. An image
model is also loaded with plain torch in a fresh process, which must agree."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import StepContract, StepParams, reads
from mlpipe.pipeline.step import run_script, step_run

FRESH_PROCESS_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Params(StepParams):
    model_artifact: str = reads(
        "model_export",
        "Reference of the exported model (model_export:auto: this run's, else prod, else latest)",
    )
    test_artifact: str = reads("test_data", context="evaluation")


# With promote selected too, test what promote left in prod.
CONTRACT = StepContract("test_model", Params, __doc__, after=("promote",))


def run(params: Params) -> None:
    import mlflow

    from mlpipe.errors import StepError
    from mlpipe.models import evaluation, scoring

    with step_run(CONTRACT, params) as step:
        spec = step.spec
        model_version, model_path = step.use(params.model_artifact)
        test_version, test = step.read_data(params.test_artifact)
        prediction, scores = scoring.evaluate(scoring.load(model_path), test, spec)
        fresh = scoring.check_in_fresh_process(model_path, test, spec, prediction)
        if fresh is not None:
            step.log_metrics({"fresh_process_max_abs_diff": fresh["max_abs_diff"]})
            step.log.info(
                "%s in a fresh process without the project (%s): largest difference from pyfunc %.3g",
                fresh["load"],
                fresh["loader"],
                fresh["max_abs_diff"],
            )
            if not fresh["max_abs_diff"] <= FRESH_PROCESS_TOLERANCE:
                raise StepError(
                    f"{step.name}: {model_version.ref} gives other probabilities under {fresh['load']} in a "
                    f"fresh process than as pyfunc (largest difference {fresh['max_abs_diff']:.3g}); "
                    "expected the same"
                )
        actual = spec.kind.target(test, spec)
        if spec.task == "regression":
            step.log_figure(
                evaluation.predicted_vs_actual(actual, prediction.values, spec.target),
                "predicted_vs_actual.png",
            )
        else:
            table = evaluation.per_label_table(actual, prediction.values)
            mlflow.log_table(table, "per_label.json")
            step.log.info("per label (worst F1 first):\n%s", table.to_string(index=False))
            step.log_figure(
                evaluation.confusion_matrix_plot(actual, prediction.values), "confusion_matrix.png"
            )
        step.log_metrics(scores)
        tags = {"model_artifact": model_version.ref, "test_artifact": test_version.ref}
        if "format" in model_version.metadata:
            tags["model_format"] = str(model_version.metadata["format"])
        mlflow.set_tags(tags)
        step.log.info(
            "%s on %s (%d rows): %s",
            model_version.ref,
            test_version.ref,
            spec.kind.size(test),
            ", ".join(f"{k} {v:.4g}" for k, v in scores.items()),
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
