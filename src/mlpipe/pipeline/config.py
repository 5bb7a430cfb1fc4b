"""Composing the Hydra config, and checking command-line overrides before anything runs."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlpipe import project
from mlpipe.data import dataset_schema
from mlpipe.errors import StepError
from mlpipe.yaml_file import load_yaml

CONFIG_NAME = "config"
_MISSING = object()
_compose_lock = threading.Lock()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("results_root"):
        # Where Hydra's output folders go: see project.results_root.
        OmegaConf.register_new_resolver("results_root", lambda: str(project.results_root()))


def searchpath_override() -> str:
    """config.yaml sits at the project root, its groups in conf/: tell Hydra where."""
    return f"hydra.searchpath=[file://{project.conf_dir()}]"


def groups() -> dict[str, list[str]]:
    conf = project.conf_dir()
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in conf.iterdir() if d.is_dir()}


def load(overrides: Sequence[str] = (), hydra_choices: bool = False) -> DictConfig:
    """The composed config, as main.py sees it (for tests and tools); with `hydra_choices`, also
    the `hydra` node (which option of each group was chosen: `hydra.runtime.choices`)."""
    register_resolvers()
    with _compose_lock:
        # Inside a running Hydra app (a step run in process) its state is kept, and given back.
        running_app = get_gh_backup()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(project.root()), version_base="1.3"):
                return compose(
                    CONFIG_NAME,
                    overrides=[searchpath_override(), *overrides],
                    return_hydra_config=hydra_choices,
                )
        finally:
            restore_gh_from_backup(running_app)


def group_files(overrides: list[Override], known_groups: dict[str, list[str]]) -> list[Path]:
    """The file of every group option the run composes: config.yaml's defaults list as the
    overrides change it, every value of a sweep (config.yaml's own syntax is checked on the way)."""
    root_file = project.root() / f"{CONFIG_NAME}.yaml"
    choices: dict[str, list[Any]] = {}
    for entry in (load_yaml(root_file, f"main: {root_file}") or {}).get("defaults") or []:
        if isinstance(entry, dict):
            choices.update({str(group): [option] for group, option in entry.items()})
    for override in overrides:
        if override.key_or_group in known_groups:
            sweep = override.is_sweep_override()
            choices[override.key_or_group] = (
                list(override.sweep_string_iterator()) if sweep else [override.value()]
            )
    files = [
        project.conf_dir() / group / f"{option}.yaml"
        for group, options in choices.items()
        for option in options
    ]
    return [f for f in files if f.is_file()]


def check_overrides(args: Sequence[str]) -> None:
    """Unknown keys and unknown group options become one clear line, not Hydra's paragraph, and
    so does a syntax error in a config file the run composes, or a dataset file its schema refuses.

    Sweeps are checked on their first value; `+key=` (append) and `hydra...` are left to Hydra.
    """
    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-") and "=" in a])
    known_groups = groups()
    for file in group_files(parsed, known_groups):
        content = load_yaml(file, f"main: {file}")
        if file.parent.name == "dataset":  # before Hydra resolves config.yaml's `${dataset...}`
            dataset_schema.check(content or {}, f"main: {file}")
    selections, values = [], []
    for override in parsed:
        key = override.key_or_group
        if override.package or key.startswith("hydra") or override.is_add() or override.is_force_add():
            continue
        first = (
            next(iter(override.sweep_string_iterator())) if override.is_sweep_override() else override.value()
        )
        if key in known_groups or key.split("/")[0] in known_groups:
            if str(first) not in known_groups.get(key, []):
                raise StepError(
                    f"main: unknown {key} '{first}' in the overrides; expected one of "
                    f"{', '.join(known_groups.get(key, [])) or 'nothing'} (files in conf/{key}/)"
                )
            selections.append(f"{key}={first}")
        else:
            values.append(key)
    if not values:
        return  # group choices are checked against conf/ above; nothing to compose for
    config = load(selections)
    for key in values:
        if override_target_missing(config, key):
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(config, parent) if parent else config
            known = ", ".join(map(str, node.keys())) if isinstance(node, DictConfig) else ""
            raise StepError(
                f"main: unknown config key '{key}' in the overrides"
                + (f"; keys under '{parent or 'the root'}': {known}" if known else "")
                + f" (use +{key}=... to add a key)"
            )


def override_target_missing(config: DictConfig, key: str) -> bool:
    return OmegaConf.select(config, key, default=_MISSING, throw_on_missing=False) is _MISSING


def section_of(cfg: DictConfig, step: str) -> dict[str, Any]:
    """A step's section of the config, resolved (empty when the config has none)."""
    try:
        node = cfg.get(step)
        section = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    except OmegaConfBaseException as e:
        raise StepError(f"main: {unresolved(cfg, step, e)}") from e
    if not isinstance(section, dict):
        raise StepError(f"main: config section '{step}' is {section!r}; expected a mapping of parameters")
    return section


def unresolved(cfg: DictConfig, step: str, error: OmegaConfBaseException) -> str:
    """Why a section does not resolve: a key it interpolates that another section lacks is said
    as that section's fault (`~data_check.ks_alpha` breaks `inference.ks_alpha` too)."""
    found = re.match(r"Interpolation key '([\w.]+)' not found", str(error))
    if found and "." in found.group(1):
        section, _, key = found.group(1).rpartition(".")
        if isinstance(OmegaConf.select(cfg, section, default=None), DictConfig):
            return f"config section '{section}' lacks '{key}', which section '{step}' interpolates"
    return f"config section '{step}' cannot be resolved: {str(error).splitlines()[0]}"
