"""data_split: holds out a test set (`data_split.test_size`, `random_seed`, `stratify_by`); the rest
is trainval (training splits off its validation rows)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import StepContract, StepParams, param, reads, writes
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams):
    input_artifact: str = reads("clean_data", "Reference of the clean data to split")
    trainval_artifact: str = writes("trainval_data")
    test_artifact: str = writes("test_data")
    test_size: float = param("Fraction of rows held out for the test step")
    random_seed: int = param("Seed of the split")
    stratify_by: str | None = param("Column to stratify by (null: none); images split by class when set")


CONTRACT = StepContract("data_split", Params, __doc__)


def run(params: Params) -> None:
    with step_run(CONTRACT, params) as step:
        spec = step.spec
        version, data = step.read_data(params.input_artifact)
        where = step.context(f"{version.ref} ({version.file})")
        trainval, test = spec.kind.split_rows(
            data, params.test_size, params.random_seed, params.stratify_by, where
        )
        step.log.info(
            "%s: %d rows -> trainval %d, test %d%s",
            version.ref,
            spec.kind.size(data),
            len(trainval),
            len(test),
            f" (stratified by {params.stratify_by})" if params.stratify_by else "",
        )
        step.log_metrics({"rows_trainval": len(trainval), "rows_test": len(test)})
        meta = {"input": version.ref, "test_size": params.test_size, "stratify_by": params.stratify_by}
        for rows, name, kind, what in (
            (trainval, params.trainval_artifact, "trainval_data", "Training and validation rows"),
            (test, params.test_artifact, "test_data", "Held-out test rows"),
        ):
            # One part at a time: at most the table and one copy of its rows in memory.
            part = spec.kind.take(data, rows)
            step.log_data(part, name, type=kind, description=f"{what} of {version.ref}", metadata=meta)
            del part


if __name__ == "__main__":
    run_script(CONTRACT, run)
