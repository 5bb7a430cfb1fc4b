"""download: fetches the data from a path, a `file://` or `http(s)://` URL, or a file a package
ships (`pkg://palmerpenguins/data/penguins.csv`), reads it once so a bad source fails here, and
logs it unchanged (an image folder as `images.tar.gz` of its files)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import ProjectPath, StepContract, StepParams, param, writes
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams):
    source: ProjectPath = param(
        "Path (from the project root), file:// or http(s):// URL, or pkg://<package>/<file> of a CSV or "
        "Parquet file; for images a folder, an archive or sklearn://digits"
    )
    output_artifact: str = writes("raw_data")


CONTRACT = StepContract("download", Params, __doc__)


def run(params: Params) -> None:
    with step_run(CONTRACT, params) as step:
        fetched = step.spec.kind.fetch(params.source, step.workdir, step.name)
        step.log.info(fetched.summary)
        step.log_metrics(fetched.metrics)
        step.log_artifact(
            params.output_artifact,
            fetched.path,
            type="raw_data",
            description=f"Raw data as fetched from {params.source}",
            metadata={"source": params.source, **fetched.metadata},
            schema=fetched.schema,
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
