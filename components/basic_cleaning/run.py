"""basic_cleaning: drop rows outside the configured bounds, parse dates, drop duplicates."""

from __future__ import annotations

import argparse

from mlpipe.cleaning import clean, describe_report
from mlpipe.component import main, step_run
from mlpipe.paths import resolve_path
from mlpipe.schema import DatasetSpec

STEP = "basic_cleaning"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input_artifact", default="raw_data:latest")
    parser.add_argument("--output_artifact", default="clean_data")
    parser.add_argument("--dataset_config", default="conf/dataset/nyc_airbnb.yaml")
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
        spec = DatasetSpec.from_file(resolve_path(args.dataset_config))
        version, raw = step.read_table(args.input_artifact)
        df, report = clean(raw, spec, step.where(f"{version.ref} ({version.file})"))
        step.log.info(describe_report(report))
        step.log_metrics({"rows_in": report["rows_in"], "rows_out": report["rows_out"]})
        step.log_metrics({f"dropped.{rule}": n for rule, n in report["dropped"].items()})
        step.log_json(report, "cleaning_report.json")
        step.log_table(
            df,
            args.output_artifact,
            "clean_data.parquet",
            type="clean_data",
            description=f"{spec.name} after basic cleaning ({describe_report(report)})",
            metadata={"dropped": report["dropped"], "input": version.ref},
        )


if __name__ == "__main__":
    main(STEP, parse_args, go)
