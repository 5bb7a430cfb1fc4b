"""Batch inference against a plain `model.predict` on the same 20,000 rows, in one process.

Set-up (once, in a temporary store): the pipeline trains the default model (random forest, 100
trees) on the shipped NYC sample and promotes it to `prod`. Then, in this one process, `repeats`
times each, medians reported:

- plain: the prod model loaded through pyfunc, `model.predict` on the 20,000 rows of the source
  (and, as a script would, with reading the CSV and writing the predictions as Parquet);
- the inference step (run in this process, a fresh ledger each time) with one worker and with
  two: its scoring phase (batches and ledger commits, the model loaded: the step's metrics
  `scoring_seconds` and `scoring_cpu_seconds`) and the whole step (its MLflow run, fetching the
  model, reading and hashing the source, the ledger, the outputs and their logging);
- incremental: the same step after a full run, with 1 % of the rows changed, and with none.

Wall seconds and CPU seconds (this process and its workers) are both reported: on a shared
machine the wall clock says how busy the others are as much as what the step costs.

    .venv/bin/python benchmarks/inference_throughput.py            # --repeats N --batch-size N
    .venv/bin/python benchmarks/inference_throughput.py --model model.estimator.n_estimators=600
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_utils import ROOT, print_table, project_env

ROWS = 20_000
CHANGED = ROWS // 100


def prepare(folder: Path, overrides: list[str]) -> str:
    """A store with the default model (with `overrides`) trained on the sample and promoted to prod."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    steps = "main.steps='download,basic_cleaning,data_check,data_split,train,promote'"
    run_dir = f"hydra.run.dir={folder}/outputs"
    done = subprocess.run(
        [sys.executable, "main.py", steps, "main.executor=inprocess", run_dir, *overrides],
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
    parser.add_argument(
        "--model", nargs="*", default=[], help="Hydra overrides of the model trained in the set-up"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    uri = prepare(folder, args.model)
    os.environ.update(project_env(MLFLOW_TRACKING_URI=uri))
    os.environ["MLPIPE_PROJECT_ROOT"] = str(ROOT)
    sys.path.insert(0, str(ROOT / "src"))

    import mlflow
    import mlflow.pyfunc
    import pandas as pd

    from mlpipe.inference.workers import cpu_seconds
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
    measured: dict[str, list[tuple[float, float]]] = {}  # name -> (wall, CPU) of each repeat

    def add(name: str, wall: float, cpu: float) -> None:
        measured.setdefault(name, []).append((wall, cpu))

    def step(name: str, ledger: str, path: Path, workers: int, rows_scored: int) -> None:
        argv = ["--source", str(path), "--ledger_uri", ledger, "--workers", str(workers)]
        argv += ["--dataset_config", "conf/dataset/nyc_airbnb.yaml"]
        if args.batch_size:
            argv += ["--batch_size", str(args.batch_size)]
        params = parse_args(module.CONTRACT, argv, component)
        started, cpu = time.perf_counter(), cpu_seconds()
        module.run(params)
        add(f"{name}: whole step", time.perf_counter() - started, cpu_seconds() - cpu)
        metrics = client.search_runs(
            [os.environ["MLFLOW_EXPERIMENT_ID"]],
            "tags.`mlpipe.step` = 'inference'",
            order_by=["attributes.start_time DESC"],
        )[0].data.metrics
        assert metrics["rows_scored"] == rows_scored, metrics
        if rows_scored:
            add(f"{name}: scoring", metrics["scoring_seconds"], metrics["scoring_cpu_seconds"])

    model = mlflow.pyfunc.load_model("models:/nyc_airbnb_random_forest@prod")
    for repeat in range(args.repeats):
        started, cpu = time.perf_counter(), cpu_seconds()
        model.predict(rows)
        add("plain model.predict", time.perf_counter() - started, cpu_seconds() - cpu)
        started, cpu = time.perf_counter(), cpu_seconds()
        script_model = mlflow.pyfunc.load_model("models:/nyc_airbnb_random_forest@prod")
        table = pd.read_csv(source)
        table.assign(prediction=script_model.predict(table)).to_parquet(folder / "plain.parquet")
        add("plain script (load, read, predict, write)", time.perf_counter() - started, cpu_seconds() - cpu)
        for workers in (1, 2):
            ledger = f"sqlite:///{folder / f'ledger-{repeat}-{workers}.db'}"
            step(f"full, {workers} worker(s)", ledger, source, workers, ROWS)
            if workers == 1:
                step("incremental 1 %", ledger, changed_source, 1, CHANGED)
                step("nothing changed", ledger, changed_source, 1, 0)
        print(f"repeat {repeat + 1} of {args.repeats} done", flush=True)

    wall = {k: statistics.median(w for w, _ in v) for k, v in measured.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in measured.items()}
    print_table(
        ("measurement", "wall s", "CPU s"),
        [(k, f"{wall[k]:.2f}", f"{cpu[k]:.2f}") for k in measured],
        f"medians of {args.repeats}, {ROWS} rows (CPU: this process and the workers)",
    )
    plain, one, two = "plain model.predict", "full, 1 worker(s): scoring", "full, 2 worker(s): scoring"
    full, incremental = "full, 1 worker(s): whole step", "incremental 1 %: whole step"
    ratios = [
        ("throughput per CPU second, scoring 1 worker / plain", cpu[plain] / cpu[one], ">= 0.9"),
        ("throughput, wall, scoring 1 worker / plain", wall[plain] / wall[one], ">= 0.9"),
        ("throughput, wall, scoring 2 workers / plain", wall[plain] / wall[two], "> 1 worker's"),
        (
            "cost, incremental 1 % / full, scoring, wall",
            wall["incremental 1 %: scoring"] / wall[one],
            "<= 0.10",
        ),
        ("cost, incremental 1 % / full, whole step, wall", wall[incremental] / wall[full], "<= 0.10"),
        ("cost, incremental 1 % / full, whole step, CPU", cpu[incremental] / cpu[full], "<= 0.10"),
        (
            "floor: nothing changed / full, whole step, CPU",
            cpu["nothing changed: whole step"] / cpu[full],
            "",
        ),
    ]
    print_table(
        ("ratio", "value", "goal"), [(n, f"{v:.2f}", g) for n, v, g in ratios], "ratios of the medians"
    )


if __name__ == "__main__":
    main()
