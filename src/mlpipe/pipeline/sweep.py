"""Hydra multiruns: who a job is (sweep id, job number), the objective a sweeper optimizes,
the record each job leaves in its own output dir, and the summary of a finished sweep."""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mlpipe.errors import StepError
from mlpipe.tracking import runs, store
from mlpipe.tracking.runs import TAG_SWEEP_ID, TAG_SWEEP_JOB, TAG_SWEEP_OVERRIDES, TAG_SWEEP_SUMMARY

log = logging.getLogger("sweep")
JOB_RECORD = "sweep_job.json"  # written by each job into its own output dir
SUMMARY_FILE = "sweep_summary.csv"
FAILED = math.nan  # what a failed job returns: Optuna marks the trial failed, the sweep goes on


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_id(sweep_dir: str | Path) -> str:
    """A sweep is named by its output folder (unique per invocation, and where its files are)."""
    return str(Path(sweep_dir).resolve())


def job_tags() -> dict[str, str]:
    """Tags for the pipeline run of a multirun job; none outside a multirun."""
    if not is_multirun():
        return {}
    hydra_cfg = HydraConfig.get()
    return {
        TAG_SWEEP_ID: sweep_id(hydra_cfg.sweep.dir),
        TAG_SWEEP_JOB: str(hydra_cfg.job.num),
        TAG_SWEEP_OVERRIDES: " ".join(hydra_cfg.overrides.task)[:5000],
    }


def objective(cfg: DictConfig, children: dict[str, str], client: MlflowClient | None = None) -> float | None:
    """The configured metric (`main.objective.metric`) of the configured step's run, or None
    when that step was not run (then there is nothing to optimize)."""
    step, metric = str(cfg.main.objective.step), str(cfg.main.objective.metric)
    if step not in children:
        return None
    metrics = (client or MlflowClient()).get_run(children[step]).data.metrics
    if metric not in metrics:
        raise StepError(
            f"main: objective metric '{metric}' (main.objective.metric) not logged by step '{step}'; "
            f"it logged: {', '.join(sorted(metrics)) or 'nothing'} (set main.objective.metric and .direction)"
        )
    return float(metrics[metric])


@dataclass
class JobRecord:
    job: int
    overrides: str
    status: str  # FINISHED or FAILED
    objective: float | None = None
    parent_run_id: str | None = None
    step_runs: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def write(self, output_dir: Path) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / JOB_RECORD).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> JobRecord:
        return cls(**json.loads(path.read_text()))


def job_record(status: str, **values: Any) -> JobRecord:
    hydra_cfg = HydraConfig.get()
    return JobRecord(
        job=int(hydra_cfg.job.num), overrides=" ".join(hydra_cfg.overrides.task), status=status, **values
    )


def collect(sweep_dir: Path) -> list[JobRecord]:
    return [JobRecord.read(p) for p in sorted(sweep_dir.glob(f"*/{JOB_RECORD}"))]


def ranked(records: list[JobRecord], direction: str) -> list[JobRecord]:
    """Best job first; failed jobs and jobs without an objective last, by job number."""
    if direction not in ("minimize", "maximize"):
        raise StepError(f"main: main.objective.direction is '{direction}'; expected minimize or maximize")
    sign = 1.0 if direction == "minimize" else -1.0

    def key(r: JobRecord) -> tuple[int, float, int]:
        scored = r.status == "FINISHED" and r.objective is not None and not math.isnan(r.objective)
        return (0, sign * r.objective, r.job) if scored else (1, 0.0, r.job)  # type: ignore[operator]

    return sorted(records, key=key)


def summary_rows(records: list[JobRecord], metric: str) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "job": r.job,
            "status": r.status,
            metric: "" if r.objective is None or math.isnan(r.objective) else r.objective,
            "overrides": r.overrides,
            "parent_run_id": r.parent_run_id or "",
            "step_runs": " ".join(f"{k}={v}" for k, v in r.step_runs.items()),
            "error": r.error,
        }
        for rank, r in enumerate(records, start=1)
    ]


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [
        [str(round(v, 4) if isinstance(v, float) else v) for v in (row[c] for c in columns)] for row in rows
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_summary(cfg: DictConfig, sweep_dir: Path) -> Path | None:
    """Print the sweep's jobs best first, write them as CSV in the sweep dir, log that to MLflow."""
    records = collect(sweep_dir)
    if not records:
        log.warning("sweep %s: no job left a record (%s); no summary", sweep_dir, JOB_RECORD)
        return None
    metric, direction = str(cfg.main.objective.metric), str(cfg.main.objective.direction)
    rows = summary_rows(ranked(records, direction), metric)
    path = sweep_dir / SUMMARY_FILE
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(r.status != "FINISHED" for r in records)
    print(
        f"\nsweep summary ({len(records)} jobs, {failed} failed, {direction} {metric}; {path}):\n"
        + format_table(rows, ["rank", "job", "status", metric, "overrides", "parent_run_id"])
    )
    experiment_id = store.ensure_experiment(str(cfg.main.project_name))
    client = MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name="sweep summary",
        tags={TAG_SWEEP_ID: sweep_id(sweep_dir), TAG_SWEEP_SUMMARY: "true"},
    )
    client.log_artifact(run.info.run_id, str(path))
    client.log_metric(run.info.run_id, "jobs", len(records))
    client.log_metric(run.info.run_id, "failed_jobs", failed)
    best = rows[0]
    if best["status"] == "FINISHED" and best[metric] != "":
        client.log_metric(run.info.run_id, f"best_{metric}", float(best[metric]))
        client.set_tag(run.info.run_id, "best_parent_run_id", best["parent_run_id"])
    runs.finish_run(run.info.run_id, failed=False)
    return path
