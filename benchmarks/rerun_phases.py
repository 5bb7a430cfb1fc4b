"""Where an unchanged rerun's time goes, phase by phase (`python main.py`, every step reused).

Each measured run is a fresh process that marks the time as the pipeline passes each phase:
the imports, Hydra composing the config, opening the tracking store (Pipeline()), the parent run's
bookkeeping, the steps (all reused), and the exit. Prints the median of each phase.
Usage: python benchmarks/rerun_phases.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_utils import ROOT, print_table, project_env

PHASES = (
    ("imports (MLflow, Hydra, the pipeline)", "start", "imported"),
    ("Hydra composes the config", "imported", "Pipeline start"),
    ("open the tracking store (Pipeline())", "Pipeline start", "run start"),
    ("parent run, plan, W&B check", "run start", "schedule start"),
    ("steps: six reuse records", "schedule start", "schedule end"),
    ("finish the parent run, exit", "schedule end", "exit"),
)


def child(marks_file: str, started: float, argv: list[str]) -> None:
    """Run main.py in this process with time marks around the pipeline's phases."""
    marks = {"start": started}

    def mark(name: str) -> None:
        marks[name] = time.time()

    from mlpipe.pipeline import orchestrator

    mark("imported")
    for method, name in (("__init__", "Pipeline"), ("run", "run"), ("schedule", "schedule")):
        original = getattr(orchestrator.Pipeline, method)

        def timed(*args: object, _original=original, _name=name, **kwargs: object) -> object:
            mark(f"{_name} start")
            result = _original(*args, **kwargs)
            mark(f"{_name} end")
            return result

        setattr(orchestrator.Pipeline, method, timed)
    real_exit = os._exit

    def exit_marked(code: int) -> None:
        mark("exit")
        Path(marks_file).write_text(json.dumps(marks))
        real_exit(code)

    os._exit = exit_marked  # type: ignore[assignment]
    sys.argv = ["main.py", *argv]
    runpy.run_path(str(ROOT / "main.py"), run_name="__main__")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="mlpipe-bench-"))
    env = project_env(MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}")
    overrides = [f"main.project_name=bench-{uuid.uuid4().hex[:8]}"]
    first = [sys.executable, "main.py", *overrides]  # the cold run that fills the cache
    subprocess.run(first, cwd=ROOT, env=env, check=True, capture_output=True)
    durations: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    totals = []
    for _ in range(args.repeats):
        marks_file = store / "marks.json"
        started = time.time()
        code = (
            "import sys, time; sys.path.insert(0, 'benchmarks'); import rerun_phases; "
            f"rerun_phases.child({str(marks_file)!r}, {started!r}, {overrides!r})"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
        totals.append(time.time() - started)
        marks = json.loads(marks_file.read_text())
        for name, begin, end in PHASES:
            durations[name].append(marks[end] - marks[begin])
    rows = [(name, f"{statistics.median(values):.2f}") for name, values in durations.items()]
    rows.append(("whole process (wall, as the shell sees it)", f"{statistics.median(totals):.2f}"))
    print_table(("phase of an unchanged rerun", "median s"), rows, title=f"{args.repeats} runs")


if __name__ == "__main__":
    main()
