"""download: fetch the dataset and log it unchanged as the raw data artifact."""

from __future__ import annotations

import argparse

from mlpipe.component import main, step_run
from mlpipe.sources import fetch
from mlpipe.tables import read_table

STEP = "download"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="path, URL or pkg:// reference of the data")
    parser.add_argument("--output_artifact", default="raw_data", help="artifact name to log")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
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


if __name__ == "__main__":
    main(STEP, parse_args, go)
