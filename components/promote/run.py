"""promote: register the best model export and move the `prod` alias to it if it passes the gate
(scored against the current prod on the same test data), or roll `prod` back."""

from __future__ import annotations

import argparse

import mlflow
from mlflow.tracking import MlflowClient

from mlpipe import images, promotion, wandb_mirror
from mlpipe.component import Step, run_script, step_run
from mlpipe.paths import resolve_path
from mlpipe.schema import DatasetSpec

STEP = promotion.STEP


def flag(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")
    return value.lower() in ("true", "1", "yes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--candidates", default="experiment")
    parser.add_argument("--metric", default="val_mae")
    parser.add_argument("--direction", default="minimize")
    parser.add_argument("--gate_metric", default="mae")
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--force", type=flag, default=False)
    parser.add_argument("--rollback", type=flag, default=False)
    parser.add_argument("--alias", default="prod")
    parser.add_argument("--model_artifact", default="model_export:latest")
    parser.add_argument("--test_artifact", default="test_data:latest")
    parser.add_argument("--dataset_config", default="conf/dataset/nyc_airbnb.yaml")
    return parser.parse_args(argv)


def mirror_move(step: Step, record: dict, alias: str) -> None:
    """W&B's view of a move: the alias on the same model version (in place when online), and the
    promoted version recorded in the step's W&B run."""
    if not step.wandb.enabled:
        return
    version = step.store.resolve(record["artifact"])
    path = step.store.download(version, step.workdir / "mirror")
    wandb_mirror.mirror_promotion(version, path, alias, mirror=step.wandb)


def roll_back(step: Step, client: MlflowClient, args: argparse.Namespace) -> None:
    with promotion.promotion_lock(client, args.model_name):
        undo = promotion.rollback_target(promotion.history(client, args.model_name))
        target = client.get_model_version(args.model_name, str(undo["previous_version"]))
        record = promotion.move(
            client, step.store, args.model_name, args.alias, target, "rollback", step.run_id, "", None
        )
    step.log_json(record, "prod_move.json")
    mirror_move(step, record, args.alias)
    mlflow.set_tags({"decision": "rollback", "prod_version": target.version})
    step.log.info(
        "rolled %s@%s back from version %s to version %s (undoing move %d)",
        args.model_name,
        args.alias,
        record["previous_version"],
        target.version,
        undo["move"],
    )


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
        client = MlflowClient()
        if args.rollback:
            roll_back(step, client, args)
            return
        spec = DatasetSpec.from_file(resolve_path(args.dataset_config))
        if args.candidates == "artifact":
            version = step.store.resolve(args.model_artifact)
            chosen = promotion.Candidate(version.run_id, float("nan"), version)
        else:
            found = promotion.find_candidates(step.store, args.candidates, args.metric)
            chosen = promotion.best(found, args.direction)
            step.log.info(
                "best of %d candidates (%s) by %s: %s from run %s (%s %.4g)",
                len(found),
                args.candidates,
                args.metric,
                chosen.version.ref,
                chosen.run_id,
                args.metric,
                chosen.value,
            )
        step.store.record_use(step.run_id, chosen.version)
        if images.is_image_dataset(spec.raw):
            test_version, test = images.use_images(step, args.test_artifact)
        else:
            test_version, test = step.read_table(args.test_artifact)
        candidate_score = promotion.metric_of(
            promotion.score(chosen.version.uri, test, spec), args.gate_metric, chosen.version.ref
        )
        step.log_metrics({f"candidate_{args.gate_metric}": candidate_score})
        with promotion.promotion_lock(client, args.model_name):
            registered = promotion.register(client, args.model_name, chosen.version)
            current = promotion.holder(client, args.model_name, args.alias)
            if current is not None and current.version == registered.version:
                decision, prod_score = "already_prod", candidate_score
            else:
                prod_score = None
                if current is not None:
                    uri = f"models:/{args.model_name}/{current.version}"
                    prod_score = promotion.metric_of(
                        promotion.score(uri, test, spec), args.gate_metric, f"prod version {current.version}"
                    )
                passes = prod_score is None or promotion.better(
                    candidate_score, prod_score, args.direction, args.tolerance
                )
                decision = "promoted" if passes else ("forced" if args.force else "kept")
            if decision in ("promoted", "forced"):
                record = promotion.move(
                    client,
                    step.store,
                    args.model_name,
                    args.alias,
                    registered,
                    decision,
                    step.run_id,
                    args.gate_metric,
                    candidate_score,
                )
                step.log_json(record, "prod_move.json")
                mirror_move(step, record, args.alias)
        if prod_score is not None:
            step.log_metrics({f"prod_{args.gate_metric}": prod_score})
        mlflow.set_tags(
            {
                "decision": decision,
                "candidate_version": registered.version,
                "prod_version_before": current.version if current else "none",
                "test_artifact": test_version.ref,
            }
        )
        versus = (
            f"prod version {current.version} {prod_score:.4g}"
            if current and prod_score is not None
            else "no prod yet"
        )
        step.log.info(
            "%s: candidate version %s (%s) %s %.4g vs %s on %s (tolerance %g)",
            decision,
            registered.version,
            chosen.version.ref,
            args.gate_metric,
            candidate_score,
            versus,
            test_version.ref,
            args.tolerance,
        )
        if decision == "kept":
            step.log.info("prod stays on version %s; promote.force=true moves it anyway", current.version)  # type: ignore[union-attr]


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
