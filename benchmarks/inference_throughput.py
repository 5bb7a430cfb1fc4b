"""Batch inference against a plain `model.predict` on the same 20,000 rows, in one process.

Set-up (once, in a temporary store): the pipeline trains the default model (random forest, 100
trees) on the shipped NYC sample and promotes it to `prod`. Then, in this one process, `repeats`
times each, medians reported:

- plain: the prod model loaded through pyfunc, `model.predict` on the 20,000 rows of the source
  (and, as a script would, with reading the CSV and writing the predictions as Parquet);
- the inference step (run in this process, a fresh ledger each time) with one worker and with
  two: its scoring phase (batches and ledger commits, the model loaded; the step's
  `scoring_seconds`) and the whole step (its MLflow run, fetching the model, reading and hashing
  the source, the ledger, the outputs and their logging);
- incremental: the same step after a full run, with 1 % of the rows changed, and with none.

Wall seconds and CPU seconds (this process and its workers) are both reported: on a shared
machine the wall clock says how busy the others are as much as what the step costs.

    .venv/bin/python benchmarks/inference_throughput.py            # --repeats N --batch-size N
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_utils import ROOT, print_table, project_env

ROWS = 20_000
CHANGED = ROWS // 100


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (the step's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def prepare(folder: Path) -> str:
    """A store with the default model trained on the sample and promoted to prod."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    steps = "main.steps='download,basic_cleaning,data_check,data_split,train,promote'"
    done = subprocess.run(
        [sys.executable, "main.py", steps, "main.executor=inprocess", f"hydra.run.dir={folder}/outputs"],
        cwd=ROOT,
        env=project_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"set-up failed:\n{done.stderr[-3000:]}")
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: config.yaml's")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    uri = prepare(folder)
    os.environ.update(project_env(MLFLOW_TRACKING_URI=uri))
    os.environ["MLPIPE_PROJECT_ROOT"] = str(ROOT)
    sys.path.insert(0, str(ROOT / "src"))

    import mlflow
    import mlflow.pyfunc
    import pandas as pd

    from mlpipe.pipeline import components
    from mlpipe.pipeline.step import parse_args
    from mlpipe.tracking import store

    logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)  # extra columns, by design
    os.environ["MLFLOW_EXPERIMENT_ID"] = store.ensure_experiment("nyc_airbnb")
    source = folder / "source.csv"
    changed_source = folder / "changed.csv"
    rows = pd.read_csv(ROOT / "data" / "nyc_airbnb" / "sample1.csv").head(ROWS)
    rows.to_csv(source, index=False)
    edited = rows.copy()
    edited.loc[: CHANGED - 1, "minimum_nights"] += 1
    edited.to_csv(changed_source, index=False)

    component = ROOT / "components" / "batch_inference"
    module = components.load(component).module
    client = mlflow.MlflowClient()

    def step(ledger: str, path: Path, workers: int) -> tuple[float, float, dict[str, float]]:
        argv = ["--source", str(path), "--ledger_uri", ledger, "--workers", str(workers)]
        argv += ["--dataset_config", "conf/dataset/nyc_airbnb.yaml"]
        if args.batch_size:
            argv += ["--batch_size", str(args.batch_size)]
        params = parse_args(module.CONTRACT, argv, component)
        started, cpu = time.perf_counter(), cpu_seconds()
        module.run(params)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        run = client.search_runs(
            [os.environ["MLFLOW_EXPERIMENT_ID"]],
            "tags.`mlpipe.step` = 'inference'",
            order_by=["attributes.start_time DESC"],
        )[0]
        return elapsed, cpu, run.data.metrics

    times: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    model = mlflow.pyfunc.load_model("models:/nyc_airbnb_random_forest@prod")
    for repeat in range(args.repeats):
        started, cpu = time.perf_counter(), cpu_seconds()
        model.predict(rows)
        add("plain predict", time.perf_counter() - started)
        add("plain predict: cpu", cpu_seconds() - cpu)
        started, cpu = time.perf_counter(), cpu_seconds()
        script_model = mlflow.pyfunc.load_model("models:/nyc_airbnb_random_forest@prod")
        table = pd.read_csv(source)
        table.assign(prediction=script_model.predict(table)).to_parquet(folder / "plain.parquet")
        add("plain script", time.perf_counter() - started)
        add("plain script: cpu", cpu_seconds() - cpu)
        for workers in (1, 2):
            ledger = f"sqlite:///{folder / f'ledger-{repeat}-{workers}.db'}"
            whole, cpu, metrics = step(ledger, source, workers)
            add(f"step, {workers} worker(s): whole", whole)
            add(f"step, {workers} worker(s): cpu", cpu)
            add(f"step, {workers} worker(s): scoring", metrics["scoring_seconds"])
            if workers == 1:
                whole, cpu, metrics = step(ledger, changed_source, 1)
                assert metrics["rows_scored"] == CHANGED, metrics
                add("incremental 1 %: whole", whole)
                add("incremental 1 %: cpu", cpu)
                add("incremental 1 %: scoring", metrics["scoring_seconds"])
                whole, cpu, metrics = step(ledger, changed_source, 1)
                assert metrics["rows_scored"] == 0, metrics
                add("nothing changed: whole", whole)
                add("nothing changed: cpu", cpu)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()), flush=True)

    median = {k: statistics.median(v) for k, v in times.items()}
    table_rows = [
        (name, f"{seconds:.2f}", f"{ROWS / seconds:,.0f}" if name.endswith(("predict", "scoring")) else "")
        for name, seconds in median.items()
    ]
    print_table(("measurement", "median s", "rows/s"), table_rows, f"medians of {args.repeats}, {ROWS} rows")

    def ratio(a: str, b: str) -> str:
        return f"{median[a] / median[b]:.2f}"

    print_table(
        ("ratio", "value", "goal"),
        [
            (
                "throughput, step scoring 1 worker / plain predict",
                ratio("plain predict", "step, 1 worker(s): scoring"),
                ">= 0.9",
            ),
            (
                "throughput, step scoring 2 workers / plain predict",
                ratio("plain predict", "step, 2 worker(s): scoring"),
                "> 1 worker's",
            ),
            (
                "throughput, whole step 1 worker / plain script",
                ratio("plain script", "step, 1 worker(s): whole"),
                "",
            ),
            (
                "CPU, whole step 1 worker / plain script",
                ratio("step, 1 worker(s): cpu", "plain script: cpu"),
                "",
            ),
            (
                "CPU, whole step 2 workers / plain script",
                ratio("step, 2 worker(s): cpu", "plain script: cpu"),
                "",
            ),
            (
                "cost, incremental 1 % / full: scoring",
                ratio("incremental 1 %: scoring", "step, 1 worker(s): scoring"),
                "<= 0.10",
            ),
            (
                "cost, incremental 1 % / full: whole step",
                ratio("incremental 1 %: whole", "step, 1 worker(s): whole"),
                "<= 0.10",
            ),
            (
                "cost, incremental 1 % / full: whole step, CPU",
                ratio("incremental 1 %: cpu", "step, 1 worker(s): cpu"),
                "<= 0.10",
            ),
            (
                "floor: nothing changed / full, whole step",
                ratio("nothing changed: whole", "step, 1 worker(s): whole"),
                "",
            ),
        ],
        "ratios of the medians",
    )


if __name__ == "__main__":
    main()
