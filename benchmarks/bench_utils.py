"""What every benchmark here shares: timing a command in its own process, and the table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a shell with this venv active, outside any MLflow run, with W&B off
    (its cost is measured on its own, by wandb_overhead.py) unless the command line turns it on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLPIPE_WANDB_MODE"] = "disabled"
    env.update(extra)
    return env


def timed(command: Sequence[str], env: dict[str, str]) -> float:
    """Wall seconds of one command run from the project root; a failure ends the benchmark."""
    return timed_output(command, env)[0]


def timed_output(command: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and standard output of one command run from the project root."""
    started = time.perf_counter()
    result = subprocess.run(list(command), cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    if title:
        print(f"\n{title}")
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
