"""Composing the Hydra config, and checking command-line overrides before anything runs."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mlpipe.errors import StepError
from mlpipe.paths import CONF_DIR, PROJECT_ROOT

CONFIG_NAME = "config"
_MISSING = object()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def searchpath_override() -> str:
    """config.yaml sits at the project root, its groups in conf/: tell Hydra where."""
    return f"hydra.searchpath=[file://{CONF_DIR}]"


def groups() -> dict[str, list[str]]:
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in CONF_DIR.iterdir() if d.is_dir()}


def load(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config, as main.py sees it (for tests and tools)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(PROJECT_ROOT), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=[searchpath_override(), *overrides])


def check_overrides(args: Sequence[str]) -> None:
    """Unknown keys and unknown group options become one clear line, not Hydra's paragraph.

    Sweeps are checked on their first value; `+key=` (append) and `hydra...` are left to Hydra.
    """
    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-") and "=" in a])
    known_groups = groups()
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
