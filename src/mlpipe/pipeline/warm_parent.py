"""Imported last by the warm parent of the step workers (see workers.py), to leave it ready to
fork: it does once the work every worker would otherwise repeat, notes the Python threads the
preloaded modules left running (a fork copies their locks, held or not, so a worker refuses to run
the step if there are any) and removes the temporary folders W&B made at import (each worker
makes its own)."""

from __future__ import annotations

import sys
import threading

from mlpipe.tracking import wandb_mirror

# MLflow maps every installed file to its package the first time a process saves or loads a model
# (to warn about requirements the environment does not meet): a second of CPU in each step that
# does, unless it is done here once.
requirements = sys.modules.get("mlflow.utils.requirements_utils")
getattr(requirements, "_init_packages_to_modules_map", lambda: None)()

THREADS = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
wandb_mirror.release_import_time_folders()
