"""basic_cleaning: drop rows outside the configured bounds, parse dates, drop duplicates.

Images: decode the fetched folder into arrays (resized when dataset.image.size says so) and
drop identical images."""

from __future__ import annotations

import argparse

from mlpipe import images
from mlpipe.cleaning import clean, describe_report
from mlpipe.component import Step, run_script, step_run
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
        if images.is_image_dataset(spec.raw):
            clean_images(step, spec, args)
            return
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


def clean_images(step: Step, spec: DatasetSpec, args: argparse.Namespace) -> None:
    version, path = step.use(args.input_artifact)
    where = step.where(f"{version.ref} ({path.name})")
    folder = images.unpack(path, step.workdir / "unpacked", where)
    size = (spec.raw.get("image") or {}).get("size")
    found = images.read_image_folder(folder, where, tuple(size) if size else None)
    kept, duplicates = images.drop_duplicates(found) if spec.cleaning.get("drop_duplicates") else (found, 0)
    report = {"rows_in": len(found), "rows_out": len(kept), "dropped": {"duplicate images": duplicates}}
    step.log.info(
        "%s: %d images -> %d (%d identical images dropped), shape %s",
        version.ref,
        len(found),
        len(kept),
        duplicates,
        list(kept.shape),
    )
    step.log_metrics({"rows_in": len(found), "rows_out": len(kept), "dropped.duplicate images": duplicates})
    step.log_json(report, "cleaning_report.json")
    images.log_images(
        step,
        kept,
        args.output_artifact,
        type="clean_data",
        description=f"{spec.name} images decoded, {duplicates} duplicates dropped",
        metadata={"dropped": report["dropped"], "input": version.ref},
    )


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
