"""The pipeline's orchestration cost, measured against a plain script doing the same work.

Runs each command several times on the NYC sample with the default config and prints medians
and ratios (the plain script is the baseline):

1. a cold `mlflow run .` (nothing to reuse: a new experiment) / the plain script (target <= 1.5)
2. an unchanged second `mlflow run .` (every step reused) / the plain script (target <= 0.4)
3. a 6-job sweep over training parameters with the step cache / the same sweep with main.cache=false

Both executors are measured: each step a nested `mlflow run` (the default) and in-process; so is
`python main.py` (the same entry point without MLflow's CLI in front). Two floors show what no
pipeline can go below: `mlflow run` of a project whose entry point does nothing, and a Python
process that imports MLflow and opens the SQLite store.
Usage: python benchmarks/pipeline_vs_script.py [--repeats 3] [--sweep-repeats 1] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench_utils import ROOT, print_table, project_env, timed

BIN = Path(sys.executable).parent
SWEEP = "model.estimator.max_depth=10,15,20 model.preprocessing.tfidf_max_features=10,30"


OPEN_STORE = "from mlflow.tracking import MlflowClient; MlflowClient().search_experiments(max_results=1)"


def pipeline(options: str) -> list[str]:
    return [str(BIN / "mlflow"), "run", ".", "--env-manager", "local", "-P", f"hydra_options={options}"]


def empty_project() -> Path:
    """An MLflow project whose entry point starts nothing but Python."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-empty-project-"))
    (folder / "MLproject").write_text('name: empty\nentry_points:\n  main:\n    command: "python -c pass"\n')
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--sweep-repeats", type=int, default=1, help="each sweep takes minutes")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    env = project_env(MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}")
    # Create the store once, as a user's project has it after the first run ever.
    subprocess.run(
        [str(BIN / "python"), "-c", "from mlpipe.tracking import store; store.ensure_experiment('warmup')"],
        cwd=ROOT,
        env=env,
        check=True,
    )

    samples: dict[str, list[float]] = {}

    def measure(name: str, command: list[str]) -> None:
        samples.setdefault(name, []).append(timed(command, env))
        print(f"  {name}: {samples[name][-1]:.1f} s", file=sys.stderr)

    empty = empty_project()
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", file=sys.stderr)
        measure("plain script", [str(BIN / "python"), "benchmarks/plain_script.py"])
        measure(
            "floor: mlflow run of an empty project",
            [str(BIN / "mlflow"), "run", str(empty), "--env-manager", "local"],
        )
        measure("floor: python importing MLflow, opening the store", [str(BIN / "python"), "-c", OPEN_STORE])
        for executor in ("mlflow_run", "inprocess"):
            project = f"main.project_name=bench-{uuid.uuid4().hex[:8]} main.executor={executor}"
            measure(f"cold mlflow run . ({executor})", pipeline(project))
            measure(f"unchanged rerun ({executor})", pipeline(project))
        project = [f"main.project_name=bench-{uuid.uuid4().hex[:8]}", "main.executor=inprocess"]
        measure("cold python main.py (inprocess)", [str(BIN / "python"), "main.py", *project])
        measure("unchanged rerun, python main.py (inprocess)", [str(BIN / "python"), "main.py", *project])
    for _ in range(0 if args.skip_sweep else args.sweep_repeats):
        for executor in ("mlflow_run", "inprocess"):
            for cache in ("true", "false"):  # interleaved, so drifting load hits both alike
                project = f"main.project_name=bench-{uuid.uuid4().hex[:8]} main.executor={executor}"
                measure(
                    f"6-job sweep, cache={cache} ({executor})",
                    pipeline(f"{project} main.cache={cache} {SWEEP} -m"),
                )

    median = {name: statistics.median(values) for name, values in samples.items()}
    base = median["plain script"]
    rows = []
    for name, value in median.items():
        if name.startswith("6-job sweep, cache=true"):
            executor = name.split("(")[1]
            reference = median.get(f"6-job sweep, cache=false ({executor}")
            rows.append(
                (
                    name,
                    str(len(samples[name])),
                    f"{value:.1f}",
                    f"{value / reference:.2f}",
                    "same sweep, cache=false",
                )
            )
        elif name.startswith("6-job sweep"):
            rows.append((name, str(len(samples[name])), f"{value:.1f}", "", ""))
        else:
            rows.append(
                (name, str(len(samples[name])), f"{value:.1f}", f"{value / base:.2f}", "plain script")
            )
    print_table(("measurement", "runs", "median s", "ratio", "baseline"), rows)


if __name__ == "__main__":
    main()
