"""The pipeline's orchestration cost, measured against a plain script doing the same work.

Runs each command several times, taking turns, on the NYC sample with the default config (W&B
disabled), and prints medians and the ratios issue 12 sets targets for. `floor` is `mlflow run`
of a project whose entry point does nothing (`python -c pass`), on a store as fresh as the
pipeline's: what MLflow's command line costs before any pipeline runs (also shown: `mlflow run .
-e benchmarks/noop.py`, this project with an entry point that does nothing, where MLflow also
reads the git checkout).

1. cold `mlflow run .` on a fresh store: (time - floor) / plain script          target <= 1.2
2. unchanged rerun through `mlflow run .`: (time - floor) / plain script       target <= 0.1
3. cold `python main.py` on a fresh store / plain script                       target <= 1.2
4. unchanged rerun, `python main.py` / plain script                            target <= 0.3
5. a 6-job train-only sweep (`python main.py ... -m`, basic launcher, data steps done before)
   / the sum of the plain script's fit times with the same six settings         target <= 1.3

The floor under 2 and 4: a Python process that imports MLflow, opens the store and exits at once
(any process that looks at the store pays it). `--executors mlflow_run,inprocess` adds the
other executors' cold runs and reruns through `mlflow run .` for comparison.

Usage: python benchmarks/pipeline_vs_script.py [--repeats 3] [--sweep-repeats 1] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

from bench_utils import ROOT, print_table, project_env, timed, timed_output

BIN = Path(sys.executable).parent
GRID = {
    "model.estimator.max_depth": ("10", "15", "20"),
    "model.preprocessing.tfidf_max_features": ("10", "30"),
}
PLAIN = [str(BIN / "python"), "benchmarks/plain_script.py"]
EMPTY_RUN = [str(BIN / "mlflow"), "run"]
LOCAL = ["--env-manager", "local"]
NOOP = "benchmarks/noop.py"  # this project (a git checkout), with an entry point that does nothing
OPEN_STORE = (
    "import os; from mlflow.tracking import MlflowClient; "
    "MlflowClient().search_experiments(max_results=1); os._exit(0)"  # main.py's exit: no teardown
)


def empty_project() -> Path:
    """An MLflow project whose entry point starts nothing but Python."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-empty-project-"))
    (folder / "MLproject").write_text('name: empty\nentry_points:\n  main:\n    command: "python -c pass"\n')
    return folder


def fresh_store() -> dict[str, str]:
    """The environment of a user's shell pointing at a store that does not exist yet."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return project_env(MLFLOW_TRACKING_URI=uri, MLPIPE_OUTPUT_ROOT=str(folder))


def mlflow_run(options: str = "") -> list[str]:
    return [str(BIN / "mlflow"), "run", ".", "--env-manager", "local", "-P", f"hydra_options={options}"]


def main_py(*overrides: str) -> list[str]:
    return [str(BIN / "python"), "main.py", *overrides]


def sweep_jobs() -> list[list[str]]:
    (depth_key, depths), (features_key, features) = GRID.items()
    return [[f"{depth_key}={d}", f"{features_key}={f}"] for d in depths for f in features]


def fit_seconds(output: str) -> float:
    found = re.search(r"fit seconds ([\d.]+)", output)
    assert found, output
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-repeats", type=int, default=1, help="each sweep takes a minute or more")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--executors", default="", help="others to compare, e.g. mlflow_run,inprocess")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}

    def measure(name: str, command: list[str], env: dict[str, str]) -> str:
        seconds, output = timed_output(command, env)
        samples.setdefault(name, []).append(seconds)
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr)
        return output

    empty = str(empty_project())
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", file=sys.stderr)
        env = fresh_store()
        output = measure("plain script", PLAIN, env)
        samples.setdefault("plain script: fit", []).append(fit_seconds(output))
        measure("floor: mlflow run of an empty project, fresh store", [*EMPTY_RUN, empty], env)
        measure("floor: mlflow run of an empty project", [*EMPTY_RUN, empty], env)
        measure("floor: mlflow run . -e benchmarks/noop.py", [*EMPTY_RUN, ".", "-e", NOOP, *LOCAL], env)
        measure(
            "floor: python importing MLflow, opening the store", [str(BIN / "python"), "-c", OPEN_STORE], env
        )
        measure("cold mlflow run . (fresh store)", mlflow_run(), fresh := fresh_store())
        measure("unchanged rerun, mlflow run .", mlflow_run(), fresh)
        measure("cold python main.py (fresh store)", main_py(), fresh := fresh_store())
        measure("unchanged rerun, python main.py", main_py(), fresh)
        for executor in filter(None, args.executors.split(",")):
            options = f"main.executor={executor}"
            measure(f"cold mlflow run . ({executor})", mlflow_run(options), fresh := fresh_store())
            measure(f"unchanged rerun, mlflow run . ({executor})", mlflow_run(options), fresh)
    for _ in range(0 if args.skip_sweep else args.sweep_repeats):
        env = fresh_store()
        timed(main_py("main.steps='download,basic_cleaning,data_check,data_split'"), env)
        grid = [f"{key}={','.join(values)}" for key, values in GRID.items()]
        measure("6-job train-only sweep, python main.py", main_py("main.steps=train", *grid, "-m"), env)
        fits = [fit_seconds(timed_output([*PLAIN, *job], env)[1]) for job in sweep_jobs()]
        samples.setdefault("plain script: the six fits", []).append(sum(fits))

    median = {name: statistics.median(values) for name, values in samples.items()}
    plain, floor, fresh_floor = (
        median["plain script"],
        median["floor: mlflow run of an empty project"],
        median["floor: mlflow run of an empty project, fresh store"],
    )
    rows = []
    for name, value in median.items():
        runs = str(len(samples[name]))
        if name.startswith("cold mlflow run"):
            ratio, baseline = (value - fresh_floor) / plain, "(time - fresh-store floor) / plain script"
        elif name.startswith("unchanged rerun, mlflow run"):
            ratio, baseline = (value - floor) / plain, "(time - floor) / plain script"
        elif name.startswith("6-job"):
            ratio, baseline = value / median["plain script: the six fits"], "the plain script's six fits"
        elif name == "plain script: the six fits":
            ratio, baseline = None, ""
        else:
            ratio, baseline = value / plain, "plain script"
        rows.append((name, runs, f"{value:.2f}", "" if ratio is None else f"{ratio:.2f}", baseline))
    print_table(("measurement", "runs", "median s", "ratio", "baseline"), rows, title=f"{ROOT}")


if __name__ == "__main__":
    main()
