"""The pipeline's entry point: `mlflow run .` (or `python main.py key=value ...`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlpipe.config import check_overrides, register_resolvers, searchpath_override
from mlpipe.errors import StepError
from mlpipe.fast_exit import exit_after
from mlpipe.orchestrator import Pipeline
from mlpipe.sweep import FAILED, is_multirun, job_record, job_tags, objective


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the pipeline; return the sweep objective (`main.objective`) for Hydra's sweepers."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S", force=True
    )
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    pipeline = None
    try:
        pipeline = Pipeline(cfg, output_dir, tags=job_tags())
        children = pipeline.run()
        value = objective(cfg, children) if is_multirun() else None  # only sweepers read it
    except Exception as e:
        if not is_multirun() and not isinstance(e, StepError):
            raise  # a bug: keep the traceback
        reason = str(e) if isinstance(e, StepError) else f"{type(e).__name__}: {e}"
        print(f"error: {reason}", file=sys.stderr)
        if not is_multirun():
            sys.exit(1)
        if not isinstance(e, StepError):
            logging.getLogger("main").exception("job failed")
        # One failed job must not end the sweep: record it and return the failure marker.
        parent = pipeline.parent_id if pipeline else None
        job_record("FAILED", parent_run_id=parent, error=reason).write(output_dir)
        return FAILED
    if is_multirun():
        job_record("FINISHED", objective=value, parent_run_id=pipeline.parent_id, step_runs=children).write(
            output_dir
        )
    return value


def cli() -> None:
    register_resolvers()
    try:
        check_overrides(sys.argv[1:])
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv.insert(1, searchpath_override())  # before any flag: `... -m` ends many command lines
    main()


if __name__ == "__main__":
    exit_after(cli)
