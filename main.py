"""The pipeline's entry point: `mlflow run .` (or `python main.py key=value ...`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # this project's code, whatever copy is installed elsewhere

try:
    import hydra
    from omegaconf import DictConfig

    from mlpipe.pipeline import entry
    from mlpipe.pipeline.fast_exit import exit_after
except ModuleNotFoundError as missing:  # `mlflow run` starts us with the `python` on PATH
    print(
        f"error: main: {sys.executable} cannot import {missing.name}: it is not this project's "
        "environment (`mlflow run` runs main.py with the `python` on PATH); run `source "
        ".venv/bin/activate` first, or `make run`",
        file=sys.stderr,
    )
    sys.exit(1)


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the pipeline; return the sweep objective (`main.objective`) for Hydra's sweepers."""
    return entry.run_job(cfg)


def cli() -> None:
    argv = sys.argv[1:]
    entry.prepare_process(ROOT, argv)
    sys.argv[1:] = argv
    main()


if __name__ == "__main__":
    exit_after(entry.run_interruptible, cli)
