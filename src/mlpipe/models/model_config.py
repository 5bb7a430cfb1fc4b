"""Reading a model config (conf/model/*.yaml) for a training step."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.yaml_file import load_yaml


def resolve_model_config(path: Path, spec: DatasetSpec) -> dict[str, Any]:
    """The model config with `${dataset...}` resolved, whether main.py resolved it already or
    the step runs alone on a file from conf/model/."""
    if not path.is_file():
        raise StepError(f"model config '{path}' not found; expected a YAML file")
    model = load_yaml(path, f"model config {path}") or {}
    root = OmegaConf.create({"dataset": spec.config, "model": model})
    return OmegaConf.to_container(root, resolve=True)["model"]  # type: ignore[index,return-value]


def pinned_requirements(packages: tuple[str, ...]) -> list[str]:
    """What an exported model needs at load time, pinned to what trained it (MLflow's own
    inference of requirements is slow and guesses)."""
    return [f"{p}=={importlib.metadata.version(p)}" for p in packages]
