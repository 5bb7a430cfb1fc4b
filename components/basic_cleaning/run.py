"""basic_cleaning: checks the required columns and numeric types and that every column the dataset
config names (checks, bounds, `stratify_by`) exists, drops rows outside the configured bounds (and
rows without a target), parses dates, drops exact duplicates (images: decodes them, resized when
`image.size` says so, and drops identical ones); logs rows in and out and what each rule dropped."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import StepContract, StepParams, reads, writes
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams):
    input_artifact: str = reads("raw_data")
    output_artifact: str = writes("clean_data")


CONTRACT = StepContract("basic_cleaning", Params, __doc__)


def run(params: Params) -> None:
    with step_run(CONTRACT, params) as step:
        spec = step.spec
        version, path = step.use(params.input_artifact)
        where = step.context(f"{version.ref} ({path.name})")
        cleaned = spec.kind.clean(path, spec, step.workdir, where)
        # Before the data_check makes this data the reference, not when a column is first used.
        spec.check_named_columns(spec.kind.summary(cleaned.data, spec).columns, where)
        step.log.info("%s: %s", version.ref, cleaned.describe())
        step.log_metrics({"rows_in": cleaned.rows_in, "rows_out": cleaned.rows_out})
        step.log_metrics({f"dropped.{rule}": n for rule, n in cleaned.dropped.items()})
        step.log_json(
            {"rows_in": cleaned.rows_in, "rows_out": cleaned.rows_out, "dropped": cleaned.dropped},
            "cleaning_report.json",
        )
        step.log_data(
            cleaned.data,
            params.output_artifact,
            type="clean_data",
            description=f"{spec.name} after basic cleaning ({cleaned.describe()})",
            metadata={"dropped": cleaned.dropped, "input": version.ref},
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
