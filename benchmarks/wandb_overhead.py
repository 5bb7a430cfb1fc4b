"""The cost of mirroring to W&B: the whole pipeline with tracking.wandb.mode=offline against
disabled, each run in a fresh temporary store, printed as a ratio table.

    python benchmarks/wandb_overhead.py [--repeats 2] [--steps all]

Wall-clock times on a shared machine are noisy: repeat, and read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench_utils import print_table, project_env, timed

MODES = ("disabled", "offline")


def run_pipeline(mode: str, steps: str, scratch: Path) -> float:
    """Seconds for one `python main.py` run with its own store and W&B folders."""
    scratch.mkdir(parents=True)
    env = project_env(
        MLFLOW_TRACKING_URI=f"sqlite:///{scratch / 'mlflow.db'}",
        WANDB_CACHE_DIR=str(scratch / "wandb-cache"),
        WANDB_DATA_DIR=str(scratch / "wandb-data"),
        WANDB_CONFIG_DIR=str(scratch / "wandb-config"),
    )
    command = [
        sys.executable,
        "main.py",
        f"main.steps={steps}",
        f"tracking.wandb.mode={mode}",
        f"tracking.wandb.dir={scratch / 'wandb-runs'}",
        f"hydra.run.dir={scratch / 'outputs'}",
    ]
    return timed(command, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", default="all")
    args = parser.parse_args()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="wandb-bench-") as tmp:
        for repeat in range(args.repeats):
            for mode in MODES:  # interleaved, so drifting machine load hits both modes alike
                seconds = run_pipeline(mode, args.steps, Path(tmp) / f"{mode}-{repeat}")
                times[mode].append(seconds)
                print(f"  run {repeat + 1}/{args.repeats} {mode:<8} {seconds:6.1f} s", file=sys.stderr)
    baseline = statistics.median(times["disabled"])
    rows = []
    for mode in MODES:
        median = statistics.median(times[mode])
        runs = ", ".join(f"{t:.1f}" for t in times[mode])
        rows.append((mode, f"{median:.1f}", runs, f"{median / baseline:.2f}"))
    print_table(
        ("tracking.wandb.mode", "median s", "runs (s)", "ratio to disabled"),
        rows,
        title=f"pipeline ({args.steps}), median of {args.repeats} run(s) each",
    )


if __name__ == "__main__":
    main()
