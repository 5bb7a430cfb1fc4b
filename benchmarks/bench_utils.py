"""What every benchmark here shares: timing a command in its own process, and the table."""

from __future__ import annotations

import contextlib
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


def run_sampled(command: Sequence[str], env: dict[str, str], every: float = 0.2) -> tuple[float, str, float]:
    """Wall seconds, output (stdout and stderr) and peak memory in MB of one command: the largest
    sum, over the samples, of the proportional set size (PSS: a page shared by n processes counts
    1/n to each) of the command's whole process tree, forked workers included."""
    import threading

    import psutil

    peak = 0.0
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    root = psutil.Process(process.pid)

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += member.memory_full_info().pss
            peak = max(peak, total / 1e6)
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{output[-3000:]}")
    return elapsed, output, peak
