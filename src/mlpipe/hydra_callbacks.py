"""Hydra callbacks of the pipeline (config.yaml `hydra.callbacks`), run in the process that
launches a multirun: the store is ready before any job starts, a summary follows the last one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlpipe import sweep, tracking
from mlpipe.config import register_resolvers

# Joblib workers unpickle this callback before resolving `${project_root:}` in the job's dirs.
register_resolvers()


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Parallel jobs racing on a fresh SQLite file collide in its schema migration.
        tracking.ensure_experiment(str(config.main.project_name))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.write_summary(config, Path(str(config.hydra.sweep.dir)))
