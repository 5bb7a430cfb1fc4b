"""The project's components: one folder per step under components/, each a run.py that declares
its contract (`CONTRACT`) and the function that runs it (`run`). Found, not listed: a new folder
with a run.py is a new step."""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline.contract import DATASET, MODEL, StepContract, default_value

_loaded: dict[Path, ModuleType] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Component:
    name: str  # the folder's name
    folder: Path
    module: ModuleType  # its run.py

    @property
    def contract(self) -> StepContract:
        return self.module.CONTRACT


def load(folder: Path) -> Component:
    """A component's run.py as a module, loaded once per process (its top level imports only
    what the contract needs; `run` imports the rest)."""
    path = (folder / "run.py").resolve()
    with _lock:
        if path not in _loaded:
            spec = importlib.util.spec_from_file_location(f"mlpipe_component_{folder.name}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise StepError(f"main: component '{folder.name}' has no run.py at {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while it loads
            spec.loader.exec_module(module)
            if not isinstance(getattr(module, "CONTRACT", None), StepContract) or not callable(
                getattr(module, "run", None)
            ):
                raise StepError(f"main: {path} declares no CONTRACT (a StepContract) and run(params)")
            _loaded[path] = module
        return Component(folder.name, folder, _loaded[path])


def discover(components_dir: Path | None = None) -> dict[str, Component]:
    """Every component, by folder name."""
    base = components_dir or project.components_dir()
    folders = sorted(
        p for p in base.iterdir() if (p / "run.py").is_file() and not p.name.startswith((".", "_"))
    )
    return {folder.name: load(folder) for folder in folders}


def config_choices(component: Component, given: Mapping[str, Any] | None = None) -> list[str]:
    """The config group choices a component's defaults are composed with: its contract's, or the
    dataset/model a given conf/<group>/<name>.yaml names."""
    choices = dict(c.split("=", 1) for c in component.contract.compose)
    for parameter in component.contract.parameters():
        value = (given or {}).get(parameter.name)
        if parameter.role in (DATASET, MODEL) and value:
            path = project.resolve_path(str(value))
            group = "dataset" if parameter.role == DATASET else "model"
            if path.parent == project.conf_dir() / group:
                choices[group] = path.stem
    return [f"{k}={v}" for k, v in choices.items()]


def defaults(component: Component, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values a component takes when run on its own, as config.yaml composes them (its
    step's section, the default dataset and model configs), as they read in the project."""
    from mlpipe.pipeline.config import load as load_config
    from mlpipe.pipeline.config import section_of

    cfg = load_config(config_choices(component, given), hydra_choices=True)
    section = section_of(cfg, component.contract.step)
    chosen = cfg.hydra.runtime.choices
    values: dict[str, Any] = {}
    for parameter in component.contract.parameters():
        if parameter.role == DATASET:
            values[parameter.name] = f"conf/dataset/{chosen.dataset}.yaml"
        elif parameter.role == MODEL:
            values[parameter.name] = f"conf/model/{chosen.model}.yaml"
        else:
            value = default_value(parameter, section)
            if value is not MISSING:
                values[parameter.name] = value
    return values
