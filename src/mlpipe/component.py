"""The shape every component's run.py shares: start the step's run, hand artifacts in and out,
log what was measured, and turn bad input into one error line and a FAILED run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from mlpipe import tracking
from mlpipe.artifacts import ArtifactStore, ArtifactVersion
from mlpipe.errors import StepError
from mlpipe.tables import read_table, write_table


def logger(step: str) -> logging.Logger:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S", force=True
    )
    return logging.getLogger(step)


class Step:
    """One running step: its MLflow run, the artifact store and a private scratch folder."""

    def __init__(self, name: str, run_id: str, store: ArtifactStore, workdir: Path) -> None:
        self.name = name
        self.run_id = run_id
        self.store = store
        self.workdir = workdir
        self.log = logger(name)

    def where(self, what: str) -> str:
        return f"{self.name}: {what}"

    def use(self, reference: str) -> tuple[ArtifactVersion, Path]:
        """Resolve an artifact reference, record that this run read it, fetch its files."""
        version = self.store.resolve(reference)
        self.store.record_use(self.run_id, version)
        # One folder per version: data_check fetches two versions of one artifact.
        path = self.store.download(version, self.workdir / "in" / version.name / f"v{version.version}")
        aliases = f" [{', '.join(version.aliases)}]" if version.aliases else ""
        self.log.info("using %s%s (%s) for '%s'", version.ref, aliases, version.digest[:12], reference)
        return version, path

    def read_table(self, reference: str) -> tuple[ArtifactVersion, pd.DataFrame]:
        version, path = self.use(reference)
        return version, read_table(path, self.where(f"{version.ref} ({path.name})"))

    def log_artifact(
        self, name: str, path: Path, type: str, description: str, metadata: Mapping[str, Any] | None = None
    ) -> str:
        digest, existing = self.store.log(self.run_id, name, path, type, description, dict(metadata or {}))
        if existing is not None:
            self.log.info("%s: same content as %s, no new version", name, existing.ref)
        else:
            self.log.info("%s: new version %s (%s)", name, digest[:12], path.name)
        return digest

    def log_table(
        self,
        df: pd.DataFrame,
        name: str,
        filename: str,
        type: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        path = write_table(df, self.workdir / "out" / name / filename)
        meta = {"rows": len(df), "columns": len(df.columns), **(metadata or {})}
        return self.log_artifact(name, path, type, description, meta)

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        # MLflow accepts only letters, digits and _-./ and spaces in a metric name.
        clean = {re.sub(r"[^\w\-./ ]", "_", k): float(v) for k, v in values.items()}
        mlflow.log_metrics(clean, step=step)

    def log_figure(self, figure: Figure, filename: str) -> None:
        mlflow.log_figure(figure, f"plots/{filename}")
        import matplotlib.pyplot as plt

        plt.close(figure)

    def log_json(self, data: Any, filename: str) -> None:
        mlflow.log_text(json.dumps(data, indent=2, default=str), filename)


@contextmanager
def step_run(name: str, params: Mapping[str, Any]) -> Iterator[Step]:
    """Start (or resume, when launched by `mlflow run`) the step's run; end it FINISHED or FAILED."""
    tracking.configure()
    # `mlflow run` hands us MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID; alone, the experiment is
    # MLFLOW_EXPERIMENT_NAME's (or Default) and this starts a new run there.
    with mlflow.start_run(run_name=name if "MLFLOW_RUN_ID" not in os.environ else None) as run:
        mlflow.set_tag(tracking.TAG_STEP, name)
        tracking.log_params(params, run.info.run_id)
        store = ArtifactStore(run.info.experiment_id)
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
            try:
                yield Step(name, run.info.run_id, store, Path(tmp))
            except Exception as e:
                # What main.py reports as the reason; a bug keeps its traceback on stderr too.
                reason = str(e) if isinstance(e, StepError) else f"{type(e).__name__}: {e}"
                mlflow.set_tag(tracking.TAG_ERROR, tracking.scrub(reason)[:5000])
                raise


def main(
    name: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    go: Callable[[argparse.Namespace], None],
    argv: list[str] | None = None,
) -> None:
    """The `__main__` of a component: bad input ends in one line on stderr and exit code 1."""
    args = parse_args(argv)
    try:
        go(args)
    except StepError as e:
        message = str(e) if str(e).startswith(f"{name}:") else f"{name}: {e}"
        print(f"error: {tracking.scrub(message)}", file=sys.stderr)
        sys.exit(1)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset_config", required=True, help="YAML file of the dataset config")
