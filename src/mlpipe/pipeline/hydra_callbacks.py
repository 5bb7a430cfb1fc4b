"""Hydra callbacks of the pipeline (config.yaml `hydra.callbacks`), run in the process that
launches a multirun: the config is checked and the store is ready before any job starts, a
summary follows the last one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlpipe.errors import StepError
from mlpipe.pipeline.config import register_resolvers

# Joblib workers unpickle this callback before resolving `${results_root:}` in the job's dirs.
register_resolvers()


def check_sweep_direction(config: DictConfig) -> None:
    """A sweeper that optimizes (Optuna) must go the way the objective is judged."""
    direction = config.hydra.sweeper.get("direction")
    expected = str(config.main.objective.direction)
    if direction is not None and str(getattr(direction, "name", direction)) != expected:
        raise StepError(
            f"main: hydra.sweeper.direction is '{direction}' but main.objective.direction "
            f"({config.main.objective.metric}) is '{expected}'; leave the sweeper's direction to follow it"
        )


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlpipe.pipeline import ray_jobs  # MLflow loads once the config is known (see entry.py)
        from mlpipe.tracking import store

        try:
            check_sweep_direction(config)
            # Parallel jobs racing on a fresh SQLite file collide in its schema migration.
            store.ensure_experiment(str(config.main.project_name))
            if ray_jobs.uses_ray(config):
                ray_jobs.start(config)  # with what the jobs cannot inherit from this process
        except StepError as e:  # a wrong direction, a damaged store, a Ray address nobody answers
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlpipe.pipeline import sweep

        sweep.write_summary(config, Path(str(config.hydra.sweep.dir)))
