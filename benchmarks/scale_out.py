"""Beyond one machine, measured on this one: what the tracking server (PostgreSQL, artifacts
proxied) costs per step against a SQLite file, and a sweep's wall time through the Ray launcher
(a local Ray) against the joblib launcher.

    python benchmarks/scale_out.py [--jobs 4] [--n-estimators 30] [--repeats 1]

In one invocation: a fresh server in a temporary folder (its start is timed too),
the whole pipeline (a process per step, cache off) on a fresh SQLite store and on the server, then
the same `main.steps=train` sweep with each launcher against the server. Read the ratios, not the
seconds: other work on the machine moves both sides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from bench_utils import ROOT, print_table, project_env, timed
from mlflow.tracking import MlflowClient

from mlpipe.tracking import server
from mlpipe.tracking.runs import TAG_PIPELINE, TAG_STEP

STEPS = ("download", "basic_cleaning", "data_check", "data_split", "train", "test_model")


def main_py(args: list[str], uri: str, out: Path) -> float:
    command = [sys.executable, str(ROOT / "main.py"), f"hydra.run.dir={out}/run", *args]
    return timed(command, project_env(MLFLOW_TRACKING_URI=uri, MLPIPE_OUTPUT_ROOT=str(out)))


def step_seconds(uri: str) -> dict[str, float]:
    """Each step's run time (the child runs of the latest pipeline run)."""
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("nyc_airbnb").experiment_id
    parent = client.search_runs(
        [experiment_id], f"tags.`{TAG_PIPELINE}` = 'true'", order_by=["attributes.start_time DESC"]
    )[0]
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {r.data.tags[TAG_STEP]: (r.info.end_time - r.info.start_time) / 1000 for r in children}


def ratio_row(label: str, sqlite: float, served: float) -> tuple[str, ...]:
    return (label, f"{sqlite:.1f}", f"{served:.1f}", f"{served - sqlite:+.1f}", f"{served / sqlite:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=4, help="sweep jobs (max_depth values)")
    parser.add_argument("--n-estimators", type=int, default=30)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each side, alternating who goes first"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    tmp.chmod(0o755)  # as root, PostgreSQL runs as `postgres`, which must get into its folder
    started = time.perf_counter()
    running = server.start(tmp / "server", port=server.free_port())
    server_start = time.perf_counter() - started
    try:
        model = ["model.estimator.n_jobs=1", f"model.estimator.n_estimators={args.n_estimators}"]
        pipeline = ["main.cache=false", *model]
        stores = {"SQLite": f"sqlite:///{tmp / 'mlflow.db'}", "server": running.tracking_uri}
        whole: dict[str, list[float]] = {name: [] for name in stores}
        steps: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STEPS} for name in stores}
        for repeat in range(args.repeats):
            for name in sorted(stores, reverse=bool(repeat % 2)):  # alternate who goes first
                whole[name].append(main_py(pipeline, stores[name], tmp / name))
                for step, seconds in step_seconds(stores[name]).items():
                    steps[name][step].append(seconds)
        sqlite = {s: median(v) for s, v in steps["SQLite"].items()}
        served = {s: median(v) for s, v in steps["server"].items()}
        rows = [ratio_row(step, sqlite[step], served[step]) for step in STEPS]
        rows.append(ratio_row("whole pipeline (process)", median(whole["SQLite"]), median(whole["server"])))
        extra = median([served[s] - sqlite[s] for s in STEPS])
        print_table(
            ("step (a process each, cache off)", "SQLite s", "server s", "server - SQLite", "ratio"),
            rows,
            f"tracking server (PostgreSQL, artifacts proxied; started in {server_start:.0f} s) against a "
            f"SQLite file, medians of {args.repeats}; median extra per step {extra:+.2f} s",
        )

        depths = ",".join(str(2 ** (n + 2)) for n in range(args.jobs))
        sweep = ["main.steps=train", *model, f"model.estimator.max_depth={depths}"]
        cores = os.cpu_count() or 1
        launchers = {
            f"joblib ({cores} workers)": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"],
            f"Ray, local ({cores} CPUs)": [
                "hydra/launcher=ray",
                f"+hydra.launcher.ray.init.num_cpus={cores}",
            ],
        }
        seconds: dict[str, list[float]] = {name: [] for name in launchers}
        for repeat in range(args.repeats):
            for name in sorted(launchers, reverse=bool(repeat % 2)):
                folder = f"hydra.sweep.dir={tmp}/sweep-{len(seconds[name])}-{name.split()[0].strip(',')}"
                seconds[name].append(
                    main_py([*sweep, *launchers[name], folder, "-m"], running.tracking_uri, tmp)
                )
        baseline = median(next(iter(seconds.values())))
        print_table(
            ("launcher", "wall s", "ratio"),
            [(name, f"{median(s):.1f}", f"{median(s) / baseline:.2f}") for name, s in seconds.items()],
            f"{args.jobs}-job sweep (main.steps=train, a process per step) against the server, "
            f"{cores} cores, "
            f"medians of {args.repeats}",
        )
    finally:
        server.stop(tmp / "server")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
