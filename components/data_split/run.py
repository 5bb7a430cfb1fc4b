"""data_split: hold out a test set; the rest is trainval (training splits off validation)."""

from __future__ import annotations

import argparse

from mlpipe import images
from mlpipe.component import Step, optional_column, run_script, step_run
from mlpipe.splitting import split

STEP = "data_split"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input_artifact", default="clean_data:latest")
    parser.add_argument("--trainval_artifact", default="trainval_data")
    parser.add_argument("--test_artifact", default="test_data")
    parser.add_argument("--test_size", type=float, default=0.2)
    parser.add_argument("--random_seed", type=float, default=42)
    parser.add_argument("--stratify_by", default="none", help="column name, or 'none'")
    parser.add_argument("--kind", default="table", choices=["table", "images"], help="the dataset's kind")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    stratify = optional_column(args.stratify_by)
    with step_run(STEP, vars(args)) as step:
        if args.kind == "images":
            split_images(step, args, stratify is not None)
            return
        version, df = step.read_table(args.input_artifact)
        trainval, test = split(
            df, args.test_size, int(args.random_seed), stratify, step.where(f"{version.ref} ({version.file})")
        )
        step.log.info(
            "%s: %d rows -> trainval %d, test %d%s",
            version.ref,
            len(df),
            len(trainval),
            len(test),
            f" (stratified by {stratify})" if stratify else "",
        )
        step.log_metrics({"rows_trainval": len(trainval), "rows_test": len(test)})
        split_meta = {"input": version.ref, "test_size": args.test_size, "stratify_by": stratify}
        step.log_table(
            trainval,
            args.trainval_artifact,
            "trainval_data.parquet",
            type="trainval_data",
            description=f"Training and validation rows of {version.ref}",
            metadata=split_meta,
        )
        step.log_table(
            test,
            args.test_artifact,
            "test_data.parquet",
            type="test_data",
            description=f"Held-out test rows of {version.ref}",
            metadata=split_meta,
        )


def split_images(step: Step, args: argparse.Namespace, stratified: bool) -> None:
    """Images are always split by class when stratified (the class is the image's label)."""
    version, found = images.use_images(step, args.input_artifact)
    trainval, test = images.split_images(
        found, args.test_size, int(args.random_seed), stratified, step.where(f"{version.ref} (images.npz)")
    )
    step.log.info(
        "%s: %d images -> trainval %d, test %d%s",
        version.ref,
        len(found),
        len(trainval),
        len(test),
        " (stratified by class)" if stratified else "",
    )
    step.log_metrics({"rows_trainval": len(trainval), "rows_test": len(test)})
    meta = {"input": version.ref, "test_size": args.test_size, "stratify_by": "label" if stratified else None}
    images.log_images(
        step,
        trainval,
        args.trainval_artifact,
        "trainval_data",
        f"Training and validation images of {version.ref}",
        meta,
    )
    images.log_images(
        step, test, args.test_artifact, "test_data", f"Held-out test images of {version.ref}", meta
    )


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
