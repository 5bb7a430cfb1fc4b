"""The pipeline's entry point: `mlflow run .` (or `python main.py key=value ...`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlpipe.config import check_overrides, register_resolvers, searchpath_override
from mlpipe.errors import StepError
from mlpipe.orchestrator import Pipeline


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S", force=True
    )
    try:
        Pipeline(cfg, Path(HydraConfig.get().runtime.output_dir)).run()
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    register_resolvers()
    try:
        check_overrides(sys.argv[1:])
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv.insert(1, searchpath_override())  # before any -m: argparse takes one run of overrides
    main()
