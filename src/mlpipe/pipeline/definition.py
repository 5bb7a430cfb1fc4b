"""The pipeline: every component's contract, its parameters filled from config.yaml.

A step's parameters come from its section of the config (`<step>:` in config.yaml), each checked
against the type its contract declares before anything runs; what it reads and writes comes from
the contract. When several components implement one step (train: train_sklearn for tables,
train_torch for images), the section's `component` key names the one to run (the model config
sets it). Opt-in steps (promote, inference) run only when named in `main.steps`, by their step's
name or their component's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpipe.errors import StepError
from mlpipe.pipeline.components import Component, discover
from mlpipe.pipeline.config import section_of
from mlpipe.pipeline.contract import DATASET, MODEL, OVERRIDES, PARAM, READS, WRITES, default_value
from mlpipe.pipeline.planner import StepSpec, plan, select

COMPONENT_KEY = "component"  # in a step's config section: which implementation runs


def requested(cfg: DictConfig) -> set[str]:
    return {n.strip() for n in str(cfg.main.steps).split(",")}


def names_list(value: Any) -> set[str]:
    """`a,b`, `[a, b]` or nothing, as a set of names."""
    if value is None:
        return set()
    items = (
        list(value) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else str(value).split(",")
    )
    return {str(i).strip() for i in items if str(i).strip()}


def choose(step: str, options: list[Component], section: dict[str, Any]) -> Component:
    if len(options) == 1:
        return options[0]
    names = [c.name for c in options]
    chosen = section.get(COMPONENT_KEY)
    if chosen not in names:
        raise StepError(
            f"main: {step}.{COMPONENT_KEY} is {chosen!r}; expected one of {', '.join(names)} "
            f"(the components implementing '{step}')"
        )
    return next(c for c in options if c.name == chosen)


def check_section(component: Component, section: dict[str, Any]) -> None:
    """The section names exactly the contract's parameters (artifacts optionally)."""
    contract = component.contract
    declared = {p.name: p.role for p in contract.parameters()}
    where = f"components/{component.name}/run.py"
    unknown = sorted(set(section) - set(declared) - {COMPONENT_KEY})
    if unknown:
        raise StepError(
            f"main: config section '{contract.step}' has {', '.join(map(repr, unknown))}, which {where} "
            f"does not declare; its parameters: {', '.join(declared)}"
        )
    missing = [n for n, role in declared.items() if role == PARAM and n not in section]
    if missing:
        raise StepError(
            f"main: config section '{contract.step}' lacks {', '.join(map(repr, missing))} "
            f"(parameters of {where})"
        )


def step_spec(
    component: Component,
    section: dict[str, Any],
    dataset_file: Path,
    model_file: Path,
    overrides: Sequence[str] = (),
) -> StepSpec:
    contract = component.contract
    check_section(component, section)
    given = {DATASET: str(dataset_file), MODEL: str(model_file), OVERRIDES: list(overrides)}
    raw = {
        p.name: given[p.role] if p.role in given else default_value(p, section) for p in contract.parameters()
    }
    typed = contract.build(raw, f"main: config {contract.step}")
    values = {p.name: getattr(typed, p.name) for p in contract.parameters()}
    roles = {p.name: p.role for p in contract.parameters()}
    return StepSpec(
        contract.step,
        component.name,
        reads={k: v for k, v in values.items() if roles[k] == READS},
        writes={k: v for k, v in values.items() if roles[k] == WRITES},
        params={k: v for k, v in values.items() if roles[k] not in (READS, WRITES)},
        after=contract.after,
        side_effects=contract.side_effects,
    )


def chosen_components(cfg: DictConfig) -> dict[str, Component]:
    """step -> the component that implements it under this config."""
    implementations: dict[str, list[Component]] = {}
    for component in discover().values():
        implementations.setdefault(component.contract.step, []).append(component)
    return {step: choose(step, options, section_of(cfg, step)) for step, options in implementations.items()}


def step_names(names: set[str], chosen: dict[str, Component]) -> set[str]:
    """Names from main.steps or main.force_steps as steps: a step may also be named by its
    component (`batch_inference` for `inference`, `get_data` for `download`)."""
    by_component = {component.name: step for step, component in chosen.items()}
    return {by_component.get(name, name) for name in names}


def pipeline_steps(
    cfg: DictConfig, dataset_file: Path, model_file: Path, overrides: Sequence[str] = ()
) -> list[StepSpec]:
    """Every step the config runs with `main.steps=all` (and the opt-in ones it names), in an
    order the planner would run them; `overrides` are the Hydra overrides the config was composed
    with (a step declaring `hydra_overrides()` gets them)."""
    chosen = chosen_components(cfg)
    wanted = step_names(requested(cfg), chosen)
    steps = []
    for step, component in chosen.items():
        if component.contract.opt_in and step not in wanted:
            continue
        steps.append(step_spec(component, section_of(cfg, step), dataset_file, model_file, overrides))
    everything = {name for s in steps for name in s.read_names}
    return [s for stage in plan(steps, existing=everything) for s in stage]


def kind_mismatch(cfg: DictConfig) -> str | None:
    """Why the model config (`model=`) cannot train on the dataset's kind (a table, images), if so."""
    dataset_kind, model_kind = cfg.dataset.get("kind", "table"), cfg.model.get("dataset_kind", "table")
    if dataset_kind == model_kind:
        return None
    return (
        f"model '{cfg.model.name}' trains on {model_kind} datasets, but dataset "
        f"'{cfg.dataset.name}' is of kind {dataset_kind}"
    )


def check_model_kind(cfg: DictConfig, where: str = "main") -> None:
    """The model config (`model=`) trains on the dataset's kind (a table, images)."""
    problem = kind_mismatch(cfg)
    if problem:
        raise StepError(f"{where}: {problem}; pick a matching model= or dataset=")


def selected_steps(
    cfg: DictConfig, dataset_file: Path, model_file: Path, overrides: Sequence[str] = ()
) -> list[StepSpec]:
    """The steps `main.steps` selects, after the checks that need no store: the model suits the
    dataset's kind (when a selected step takes the model config), and every forced step is selected."""
    chosen = chosen_components(cfg)
    names = str(cfg.main.steps)
    if names.strip() not in ("all", ""):
        names = ",".join(sorted(step_names(requested(cfg), chosen)))
    steps = select(pipeline_steps(cfg, dataset_file, model_file, overrides), names)
    components = discover()
    if any(MODEL in {p.role for p in components[s.component].contract.parameters()} for s in steps):
        check_model_kind(cfg)
    unknown_forced = step_names(names_list(cfg.main.get("force_steps")), chosen) - {s.name for s in steps}
    if unknown_forced:
        raise StepError(
            f"main: main.force_steps names {sorted(unknown_forced)}, which are not selected steps"
        )
    return steps
