"""A Hydra sweep run in parallel (joblib launcher) against the same sweep run job after job, and
what the orchestration costs per job (job wall time minus the time the same fit takes in process).

    python benchmarks/sweep_parallel.py [--n-estimators 30] [--workers -1]

Runs on a temporary store where the data steps ran once; every job runs `main.steps=train`.
Timings depend on the machine and on what else runs on it: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_utils import ROOT, project_env, timed
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mlpipe.data.spec import DatasetSpec
from mlpipe.data.splitting import split
from mlpipe.data.tables import read_table
from mlpipe.models.sklearn_model import build_model, load_model_config
from mlpipe.pipeline.config import load
from mlpipe.pipeline.sweep import TAG_SWEEP_ID, sweep_id
from mlpipe.tracking.artifacts import ArtifactStore

GRID = ["model.preprocessing.tfidf_max_features=10,30", "model.estimator.max_features=0.33,0.5"]


def main_py(args: list[str], uri: str, root: Path) -> float:
    """Run `python main.py ...`; return its wall time."""
    # Hydra's flags (-m) go after every override.
    command = [sys.executable, str(ROOT / "main.py"), f"hydra.run.dir={root}/outputs", *args]
    return timed(command, project_env(MLFLOW_TRACKING_URI=uri))


def job_seconds(client: MlflowClient, experiment_id: str, sweep_dir: Path) -> list[tuple[str, float]]:
    runs = client.search_runs([experiment_id], f"tags.`{TAG_SWEEP_ID}` = '{sweep_id(sweep_dir)}'")
    return [
        (r.data.tags["mlpipe.sweep.overrides"], (r.info.end_time - r.info.start_time) / 1000)
        for r in runs
        if "mlpipe.pipeline" in r.data.tags
    ]


def in_process_fit_seconds(store: ArtifactStore, overrides: str, root: Path, n_estimators: int) -> float:
    """The same train/validation split and fit as the train step, without any orchestration."""
    cfg = load([o for o in overrides.split() if not o.startswith("main.")])
    spec = DatasetSpec.from_dict(dict(cfg.dataset))
    model_file = root / "model.yaml"
    model_file.write_text(OmegaConf.to_yaml(cfg.model, resolve=True))
    trainval = read_table(
        store.download(store.resolve("trainval_data:latest"), root / "trainval"), "benchmark"
    )
    train, val = split(trainval, float(cfg.train.val_size), int(cfg.train.random_seed), None, "benchmark")
    started = time.perf_counter()
    model = build_model(spec, load_model_config(model_file, spec))
    model.fit(train, train[spec.target])
    model.predict(val)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-estimators", type=int, default=30)
    parser.add_argument("--workers", type=int, default=-1, help="joblib workers (-1: all cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        main_py(["main.steps='download,basic_cleaning,data_check,data_split'"], uri, root)
        common = [
            "main.steps=train",
            f"model.estimator.n_estimators={args.n_estimators}",
            "model.estimator.n_jobs=1",  # one core per job: the launcher is what parallelizes
            *GRID,
        ]
        sequential_dir, parallel_dir = root / "sequential", root / "parallel"
        sequential = main_py([*common, f"hydra.sweep.dir={sequential_dir}", "-m"], uri, root)
        parallel = main_py(
            [
                *common,
                "hydra/launcher=joblib",
                f"hydra.launcher.n_jobs={args.workers}",
                f"hydra.sweep.dir={parallel_dir}",
                "-m",
            ],
            uri,
            root,
        )
        client = MlflowClient(uri)
        experiment_id = client.get_experiment_by_name("nyc_airbnb").experiment_id
        store = ArtifactStore(experiment_id, client)
        jobs = job_seconds(client, experiment_id, sequential_dir)
        fits = {o: in_process_fit_seconds(store, o, root, args.n_estimators) for o, _ in jobs}
        workers = os.cpu_count() if args.workers == -1 else args.workers
        print(
            f"\nsweep of {len(jobs)} jobs (main.steps=train, n_estimators={args.n_estimators}), "
            f"{os.cpu_count()} cores"
        )
        print(f"{'mode':<28}{'wall s':>10}{'ratio':>10}")
        print(f"{'sequential (basic launcher)':<28}{sequential:>10.1f}{1.0:>10.2f}")
        print(f"{f'parallel (joblib, {workers} workers)':<28}{parallel:>10.1f}{parallel / sequential:>10.2f}")
        print(f"\n{'job (sequential sweep)':<60}{'job s':>8}{'fit s':>8}{'overhead s':>12}")
        overheads = []
        for overrides, seconds in sorted(jobs):
            swept = " ".join(o for o in overrides.split() if any(o.startswith(g.split("=")[0]) for g in GRID))
            overheads.append(seconds - fits[overrides])
            print(f"{swept:<60}{seconds:>8.1f}{fits[overrides]:>8.1f}{overheads[-1]:>12.1f}")
        print(f"{'median overhead per job':<76}{statistics.median(overheads):>12.1f}")


if __name__ == "__main__":
    main()
