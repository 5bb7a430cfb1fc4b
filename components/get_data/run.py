"""download: fetch the dataset and log it unchanged as the raw data artifact.

A table is logged as fetched; an image folder (or archive) as `images.tar.gz` of its files."""

from __future__ import annotations

import argparse

from mlpipe import images
from mlpipe.component import Step, run_script, step_run
from mlpipe.sources import fetch
from mlpipe.tables import read_table

STEP = "download"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="path, URL or pkg:// reference of the data")
    parser.add_argument("--output_artifact", default="raw_data", help="artifact name to log")
    parser.add_argument("--kind", default="table", choices=["table", "images"], help="the dataset's kind")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
        if args.kind == "images":
            download_images(step, args)
            return
        path = fetch(args.source, step.workdir / "download", STEP)
        # Read it once so an empty or unreadable file fails here, before it becomes a version.
        df = read_table(path, STEP)
        step.log.info("fetched %s: %d rows, %d columns", path.name, len(df), len(df.columns))
        step.log_metrics({"rows": len(df), "columns": len(df.columns)})
        step.log_artifact(
            args.output_artifact,
            path,
            type="raw_data",
            description=f"Raw data as fetched from {args.source}",
            metadata={"source": args.source, "rows": len(df), "columns": len(df.columns)},
        )


def download_images(step: Step, args: argparse.Namespace) -> None:
    where = step.where(f"source '{args.source}'")
    folder = images.fetch_image_folder(args.source, step.workdir / "download", where)
    # Read every image once so a bad folder fails here, before it becomes a version.
    found = images.read_image_folder(folder, where, same_size=False)
    counts = found.class_counts()
    step.log.info("fetched %d images in %d classes from %s: %s", len(found), len(counts), folder, counts)
    step.log_metrics({"images": len(found), "classes": len(counts)})
    step.log_artifact(
        args.output_artifact,
        images.pack(folder, step.workdir / "out" / images.RAW_FILE),
        type="raw_data",
        description=f"Images as fetched from {args.source}, one folder per class",
        metadata={"source": args.source, "kind": "images", "images": len(found), "classes": counts},
    )


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
